# packlm build. `make` builds the library, the CLI (build/packlm) and the tests; `make test` runs them.
CC      ?= cc
OPT     ?= -O2 -march=native
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c11 -Wall -Wextra -Wno-unused-parameter -fopenmp -D_GNU_SOURCE -Iinclude -Isrc \
           -I/usr/include/x86_64-linux-gnu/openblas-pthread
LDLIBS  += -lopenblas -lcjson -lpcre2-8 -lutf8proc -lm -fopenmp

SRC     := $(shell find src -name '*.c' | sort)
OBJ     := $(SRC:%.c=build/obj/%.o)
LIB     := build/libpacklm.a
TOOLSRC := $(wildcard tools/*.c)
TOOLOBJ := $(TOOLSRC:%.c=build/obj/%.o)
TESTSRC := $(wildcard tests/test_*.c)
TESTBIN := $(TESTSRC:tests/%.c=build/tests/%)
TESTCOMMON := $(filter-out $(TESTSRC),$(wildcard tests/*.c))
TESTCOMMONOBJ := $(TESTCOMMON:%.c=build/obj/%.o)
BENCHSRC := $(wildcard bench/*.c)
BENCHOBJ := $(BENCHSRC:%.c=build/obj/%.o)

all: build/packlm $(TESTBIN)

build/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

-include $(shell find build/obj -name '*.d' 2>/dev/null)

$(LIB): $(OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

build/packlm: $(TOOLOBJ) $(BENCHOBJ) $(LIB)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

build/tests/%: build/obj/tests/%.o $(TESTCOMMONOBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

test: all
	./tests/run_all.sh

clean:
	rm -rf build

.PHONY: all test clean
.SECONDARY:
