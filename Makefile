# Two commands matter on a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test install lint fmt cases bench bench-http bench-mcp conformance certs-jwt certs-jwt-ecdsa clean

run: $(STAMP)
	$(BIN)/policygate serve --bind 127.0.0.1:4444 --policies policies

test: $(STAMP)
	$(BIN)/pytest
	$(BIN)/ruff check engine tests
	$(BIN)/ruff format --check engine tests
	$(BIN)/mypy engine

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# Byte-compile the package once: with PYTHONDONTWRITEBYTECODE set, as on some
	# machines, it would otherwise be compiled again on every start of the gateway.
	$(BIN)/python -m compileall -q engine
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check engine tests
	$(BIN)/mypy engine
	$(BIN)/policygate lint policies
	for example in examples/*/; do $(BIN)/policygate lint --base policies $$example || exit 1; done

fmt: $(STAMP)
	$(BIN)/ruff format engine tests
	$(BIN)/ruff check --fix engine tests

cases: $(STAMP)
	$(BIN)/policygate test policies
	for example in examples/*/; do $(BIN)/policygate test --base policies $$example || exit 1; done

bench: $(STAMP)
	$(BIN)/policygate bench

bench-http: $(STAMP)
	command -v wrk > /dev/null || (echo "bench-http needs wrk (Debian package wrk)" && exit 1)
	$(BIN)/python -m tests.bench.http --seconds 20 --workers 2

bench-mcp: $(STAMP)
	command -v wrk > /dev/null || (echo "bench-mcp needs wrk (Debian package wrk)" && exit 1)
	$(BIN)/python -m tests.bench.mcp --seconds 20 --workers 1

conformance: $(STAMP)
	$(BIN)/python -m tests.conformance.run

# JWT key pairs for RS256 / ES256, private keys readable by their owner only.
certs-jwt:
	mkdir -p certs/jwt
	umask 077 && openssl genrsa -out certs/jwt/private.pem 4096
	openssl rsa -in certs/jwt/private.pem -pubout -out certs/jwt/public.pem
	chmod 600 certs/jwt/private.pem && chmod 644 certs/jwt/public.pem

certs-jwt-ecdsa:
	mkdir -p certs/jwt
	umask 077 && openssl ecparam -genkey -name prime256v1 -noout -out certs/jwt/ec_private.pem
	openssl ec -in certs/jwt/ec_private.pem -pubout -out certs/jwt/ec_public.pem
	chmod 600 certs/jwt/ec_private.pem && chmod 644 certs/jwt/ec_public.pem

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis data
