# The two commands of the README: `make demo` (set up + run the perception pipeline on bundled samples) and
# `make test` (set up + run the tests). Both work on a fresh Debian 12 machine (Python 3.11-3.13 for the venv).
.PHONY: demo test bootstrap bench soak lint clean

demo:
	bash scripts/bootstrap.sh --test   # the sample inputs come from scikit-image and Debian's pocketsphinx-testdata
	bash scripts/demo.sh

test:
	bash scripts/test.sh

bootstrap:
	bash scripts/bootstrap.sh --test

bench:
	bash scripts/bootstrap.sh --test
	bash -c '. scripts/env.sh && python bench/run_all.py'

soak:
	bash scripts/bootstrap.sh --test
	bash -c '. scripts/env.sh && python -m pytest test/test_soak.py -m soak_long -q'

lint:
	bash -c '. scripts/env.sh && ruff check'

clean:
	rm -rf build install log
