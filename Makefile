# Thin aliases for ./quickstart.sh, for those who have make.
.PHONY: demo test bench
demo:
	./quickstart.sh demo
test:
	./quickstart.sh test
bench:
	.venv/bin/python -m benchmarks $(BENCH)
