# testbed.mk -- multi-node testbed for qmorch's e2e tests (see tests/testbed/README.md).
# Works standalone (`make -f tests/testbed/testbed.mk testbed-up`, from the repo root) and included
# from the top Makefile (`include tests/testbed/testbed.mk`). Needs root.
#   TB=<state dir>   default /var/tmp/qmorch-testbed (outside the clone)
#   NODE=<name>      for testbed-node-stop / testbed-node-start / testbed-smoke
TESTBED_STANDALONE := $(if $(filter 1,$(words $(MAKEFILE_LIST))),1,)
TESTBED_SAVED_GOAL := $(.DEFAULT_GOAL)
TESTBED_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
TB ?= /var/tmp/qmorch-testbed
NODE ?= node2
TESTBED_SH = TB='$(TB)' $(TESTBED_DIR)/testbed.sh

.PHONY: testbed-help testbed-deps testbed-rootfs testbed-up testbed-down testbed-status \
        testbed-env testbed-node-stop testbed-node-start testbed-smoke testbed-cred-check

testbed-help:
	@echo "testbed targets: testbed-deps testbed-rootfs testbed-up testbed-down testbed-status testbed-env"
	@echo "                 testbed-node-stop NODE=x testbed-node-start NODE=x testbed-smoke [NODE=node1] testbed-cred-check"
	@echo "state: TB=$(TB); summary for tests: $(TB)/testbed.env"

testbed-deps:
	$(TESTBED_DIR)/deps.sh

testbed-rootfs: testbed-deps
	$(TESTBED_DIR)/mkrootfs.sh

testbed-up:
	$(TESTBED_SH) up

testbed-down:
	$(TESTBED_SH) down

testbed-status:
	@$(TESTBED_SH) status

testbed-env:
	@$(TESTBED_SH) env

testbed-node-stop:
	$(TESTBED_SH) node-stop $(NODE)

testbed-node-start:
	$(TESTBED_SH) node-start $(NODE)

testbed-smoke:
	TB='$(TB)' $(TESTBED_DIR)/smoke.sh $(if $(filter command line,$(origin NODE)),$(NODE),node1)

testbed-cred-check:
	TB='$(TB)' $(TESTBED_DIR)/cred-check.sh node1

# do not steal the including Makefile's default goal
ifeq ($(TESTBED_STANDALONE),1)
.DEFAULT_GOAL := testbed-help
else
.DEFAULT_GOAL := $(TESTBED_SAVED_GOAL)
endif
