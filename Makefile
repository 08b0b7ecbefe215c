# packlm build. `make` builds the library, the CLI ($(B)/packlm) and the tests; `make test` runs them.
# B=dir builds elsewhere (tests/sanitize.sh: B=build/asan with AddressSanitizer + UBSan).
B       ?= build
CC      ?= cc
OPT     ?= -O2 -march=native
SAN     ?=
CFLAGS  ?= $(OPT) -g
CFLAGS  += $(SAN)
CFLAGS  += -std=c11 -Wall -Wextra -Wno-unused-parameter -fopenmp -D_GNU_SOURCE -Iinclude -Isrc \
           -I/usr/include/x86_64-linux-gnu/openblas-pthread
LDLIBS  += -lopenblas -lcjson -lpcre2-8 -lutf8proc -lm -fopenmp $(SAN)

SRC     := $(shell find src -name '*.c' | sort)
OBJ     := $(SRC:%.c=$(B)/obj/%.o)
LIB     := $(B)/libpacklm.a
TOOLSRC := $(wildcard tools/*.c)
TOOLOBJ := $(TOOLSRC:%.c=$(B)/obj/%.o)
TESTSRC := $(wildcard tests/test_*.c)
TESTBIN := $(TESTSRC:tests/%.c=$(B)/tests/%)
TESTCOMMON := $(filter-out $(TESTSRC),$(wildcard tests/*.c))
TESTCOMMONOBJ := $(TESTCOMMON:%.c=$(B)/obj/%.o)
BENCHSRC := $(wildcard bench/*.c)
BENCHOBJ := $(BENCHSRC:%.c=$(B)/obj/%.o)

all: $(B)/packlm $(TESTBIN)

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)

$(LIB): $(OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(B)/packlm: $(TOOLOBJ) $(BENCHOBJ) $(LIB)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(B)/tests/%: $(B)/obj/tests/%.o $(TESTCOMMONOBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

test: all
	./tests/run_all.sh

clean:
	rm -rf $(B)

.PHONY: all test clean
.SECONDARY:

# A fuzzing campaign of every parser (scripts/fuzz-long.sh; FUZZ_RUNS, FUZZ_MAX_SECONDS).
fuzz-long:
	./scripts/fuzz-long.sh

.PHONY: fuzz-long
