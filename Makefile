# The two commands of the README: `make demo` (set up + run the perception pipeline on bundled samples) and
# `make test` (set up + run the tests). Both work on a fresh Debian 12 machine (Python 3.11-3.13 for the venv).
.PHONY: demo test bootstrap bench soak fuzz lint clean

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

# the DDS fuzz suite at 10x the CI counts and with three more seeds (~15-25 min on 2 cores), plus the io sweeps
fuzz:
	bash scripts/bootstrap.sh --test
	bash -c '. scripts/env.sh && AXCL_FUZZ_SCALE=10 AXCL_FUZZ_SEEDS=18,1,2,3 python -m pytest test/test_fuzz_dds.py \
		src/axcl_ros/test/test_image_fuzz.py src/axcl_ros/test/test_audio_rates.py -q -s'

lint:
	bash -c '. scripts/env.sh && ruff check'

clean:
	rm -rf build install log
