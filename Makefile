# packlm build. `make` builds the library, the CLI ($(B)/packlm) and the tests; `make test` runs them.
# B=dir builds elsewhere (tests/sanitize.sh: B=build/asan with AddressSanitizer + UBSan).
# CUDA=1 adds the CUDA backend (src/**/*.cu through nvcc from $(CUDA_HOME), cuBLAS and the CUDA
# runtime from the toolkit): sm_90a code (Hopper, with its warpgroup products) plus compute_80 PTX for
# other GPUs.
# $(B)/libpacklm.so is the same library, shared, for the Python package (python/).
# Libraries (Debian packages, scripts/deps.sh installs them): libopenblas-dev, libcjson-dev,
# libjansson-dev (the CLI's JSONL input), libpcre2-dev, libutf8proc-dev, libmicrohttpd-dev.
B       ?= build
CC      ?= cc
OPT     ?= -O2 -march=native
SAN     ?=
CFLAGS  ?= $(OPT) -g
CFLAGS  += $(SAN)
CFLAGS  += -std=c11 -Wall -Wextra -Wno-unused-parameter -fopenmp -D_GNU_SOURCE -Iinclude -Isrc \
           -I/usr/include/x86_64-linux-gnu/openblas-pthread -fPIC
LDLIBS  += -lopenblas -lcjson -ljansson -lpcre2-8 -lutf8proc -lmicrohttpd -lpthread -lm -fopenmp $(SAN)

SRC     := $(shell find src -name '*.c' | sort)
CUDA    ?=
CUDA_HOME ?= /usr/local/cuda
NVCC    ?= $(CUDA_HOME)/bin/nvcc
NVFLAGS ?= -O2 -g -lineinfo
NVFLAGS += -std=c++17 -Iinclude -Isrc -Xcompiler -Wall,-Wno-unused-parameter \
           -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_80,code=compute_80 -Xcompiler -fPIC
ifeq ($(CUDA),1)
CUSRC   := $(shell find src -name '*.cu' | sort)
SRC     := $(filter-out src/model/cuda_stub.c,$(SRC))
LDLIBS  += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcudart -lstdc++
FLAVOR  := cuda
else
CUSRC   :=
FLAVOR  := cpu
endif
OBJ     := $(SRC:%.c=$(B)/obj/%.o) $(CUSRC:%.cu=$(B)/obj/%.cu.o)
LIB     := $(B)/libpacklm.a
SO      := $(B)/libpacklm.so
TOOLSRC := $(wildcard tools/*.c)
TOOLOBJ := $(TOOLSRC:%.c=$(B)/obj/%.o)
TESTSRC := $(wildcard tests/test_*.c)
ifneq ($(CUDA),1)
TESTSRC := $(filter-out tests/test_cuda_%,$(TESTSRC)) # the kernel harness drives CUDA kernels directly
endif
TESTBIN := $(TESTSRC:tests/%.c=$(B)/tests/%)
TESTCOMMON := $(filter-out tests/test_%,$(wildcard tests/*.c))
TESTCOMMONOBJ := $(TESTCOMMON:%.c=$(B)/obj/%.o)
BENCHSRC := $(wildcard bench/*.c)
BENCHOBJ := $(BENCHSRC:%.c=$(B)/obj/%.o)

all: $(B)/packlm $(SO) $(TESTBIN)

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(B)/obj/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(CPPFLAGS) $(NVFLAGS) -MMD -MP -c $< -o $@

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)

# the library is rebuilt when the build switches between CPU-only and CUDA
$(B)/flavor: FORCE
	@mkdir -p $(B)
	@[ "$$(cat $@ 2>/dev/null)" = "$(FLAVOR)" ] || echo "$(FLAVOR)" > $@

$(LIB): $(OBJ) $(B)/flavor
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $(OBJ)

$(SO): $(OBJ) $(B)/flavor
	$(CC) $(CFLAGS) -shared $(OBJ) -o $@ $(LDFLAGS) $(LDLIBS)

$(B)/packlm: $(TOOLOBJ) $(BENCHOBJ) $(LIB)
	$(CC) $(CFLAGS) $^ -o $@ $(LDFLAGS) $(LDLIBS)

$(B)/tests/%: $(B)/obj/tests/%.o $(TESTCOMMONOBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $^ -o $@ $(LDFLAGS) $(LDLIBS)

test: all
	./tests/run_all.sh

clean:
	rm -rf $(B)

FORCE:
.PHONY: all test clean FORCE
.SECONDARY:

# A fuzzing campaign of every parser (scripts/fuzz-long.sh; FUZZ_RUNS, FUZZ_MAX_SECONDS).
fuzz-long:
	./scripts/fuzz-long.sh

.PHONY: fuzz-long
