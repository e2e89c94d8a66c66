# Byte Latent Transformer framework: C core, Lua experiment layer.
#   make            build ./blt (optimised for this machine; PORTABLE=1 for a generic build)
#   make deps       install missing Debian/Ubuntu packages (apt-get; sudo when not root)
#   make test       build, then run the whole suite through prove (TAP)
#   make asan       the same suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   make bench      benchmarks (not tests)
#   make fixtures   regenerate tests/fixtures/ref_*.h5 from the PyTorch reference (installs python3-torch,
#                   python3-h5py with apt-get when missing; nothing else needs them)
#   make demo       train and evaluate the default model on the default corpus
#   make corpus     the studies' corpus, data/studies (GCIDE, WordNet, KJV; docs/data.md); make builds it

PKGS     := lua5.4 hdf5 openblas
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
# Open MPI (Debian's libopenmpi-dev) when present: data-parallel training under mpirun
# (core/dist.c); without it ./blt is built as one process. MPI=0 builds without it.
ifneq ($(MPI),0)
MPI_FOUND  := $(shell pkg-config --exists ompi-c 2>/dev/null && echo yes)
endif
ifeq ($(MPI_FOUND),yes)
PKG_CFLAGS += $(shell pkg-config --cflags ompi-c) -DBLT_HAVE_MPI
PKG_LIBS   += $(shell pkg-config --libs ompi-c)
endif

# oneDNN (Debian's libdnnl-dev) when its header is present: core/dnnl.c loads
# libdnnl.so.2 at run time (dlopen), so no -ldnnl; without it every product stays on
# OpenBLAS. DNNL=0 builds without it. The sanitizer build never uses it: LeakSanitizer's
# check at exit crashes with libgomp's threads alive (and leaves them unchecked).
ifneq ($(DNNL),0)
DNNL_FOUND := $(shell echo '\#include <oneapi/dnnl/dnnl.h>' | $(CC) -E -x c - >/dev/null 2>&1 && echo yes)
endif
ifeq ($(DNNL_FOUND),yes)
DNNL_CFLAGS := -DBLT_HAVE_DNNL
PKG_LIBS   += -ldl
endif

ifeq ($(PORTABLE),1)
ARCH_FLAGS := -O3 -mtune=generic
else
ARCH_FLAGS := -O3 -march=native
endif

CC      ?= cc
WARN    := -Wall -Wextra -Wno-unused-parameter
CFLAGS  := -std=c11 -D_GNU_SOURCE -fno-math-errno -pthread -g $(WARN) $(ARCH_FLAGS) $(PKG_CFLAGS) $(DNNL_CFLAGS) $(EXTRA_CFLAGS)
LDLIBS  := $(PKG_LIBS) -lm -pthread

SRC     := $(wildcard core/*.c)
OBJ     := $(patsubst core/%.c,build/obj/%.o,$(SRC))
ASAN_OBJ := $(patsubst core/%.c,build/asan/%.o,$(SRC))
ASAN_FLAGS := -std=c11 -D_GNU_SOURCE -DBLT_NO_POOL -pthread -g -O1 -fno-omit-frame-pointer \
              -fsanitize=address,undefined -fno-sanitize-recover=undefined $(WARN) $(PKG_CFLAGS)

TESTS   := $(sort $(wildcard tests/test_*.lua))
# Debian's python3 (python3-torch, python3-h5py install there), else the first on PATH
PYTHON  ?= $(shell [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || echo python3)

.PHONY: all deps test asan bench demo clean check-deps test-long fixtures corpus FORCE

all: check-deps blt corpus

# Fails early with the fix when a library is missing (make deps installs them).
check-deps:
	@pkg-config --exists $(PKGS) || { echo "missing libraries: run 'make deps' (apt-get install of lua5.4, OpenBLAS, HDF5, oneDNN)"; exit 1; }

deps:
	@sh scripts/install_deps.sh

# The studies' default corpus from Debian's dict-gcide and dict-wn and the KJV (a few
# seconds; nothing when up to date). make test does not need it: tests use small corpora.
corpus: blt
	@./blt scripts/make_studies_corpus.lua

blt: $(OBJ)
	$(CC) $(CFLAGS) -o $@ $(OBJ) $(LDLIBS)

build/obj/%.o: core/%.c $(wildcard core/*.h) | build/obj
	$(CC) $(CFLAGS) -c -o $@ $<

# dist.o is rebuilt when MPI appears or goes (make deps, MPI=0): the stamp changes then;
# dnnl.o likewise with oneDNN's header (DNNL=0)
build/obj/mpi.stamp: FORCE | build/obj
	@echo '$(MPI_FOUND)' | cmp -s - $@ || echo '$(MPI_FOUND)' > $@
build/asan/mpi.stamp: FORCE | build/asan
	@echo '$(MPI_FOUND)' | cmp -s - $@ || echo '$(MPI_FOUND)' > $@
build/obj/dist.o: build/obj/mpi.stamp
build/asan/dist.o: build/asan/mpi.stamp
build/obj/dnnl.stamp: FORCE | build/obj
	@echo '$(DNNL_FOUND)' | cmp -s - $@ || echo '$(DNNL_FOUND)' > $@
build/obj/dnnl.o: build/obj/dnnl.stamp
FORCE:

build/asan/blt: $(ASAN_OBJ)
	$(CC) $(ASAN_FLAGS) -o $@ $(ASAN_OBJ) $(LDLIBS)

build/asan/%.o: core/%.c $(wildcard core/*.h) | build/asan
	$(CC) $(ASAN_FLAGS) -c -o $@ $<

build/obj build/asan:
	mkdir -p $@

test: deps
	@$(MAKE) --no-print-directory blt
	prove --exec 'sh tests/run.sh' $(TESTS)

test-long: deps
	@$(MAKE) --no-print-directory blt
	BLT_TEST_LONG=1 prove --exec 'sh tests/run.sh' $(TESTS)

asan: deps
	@$(MAKE) --no-print-directory build/asan/blt
	BLT_BIN=build/asan/blt BLT_SANITIZE=1 ASAN_OPTIONS=detect_leaks=1 \
	  LSAN_OPTIONS=suppressions=tests/lsan.supp prove --exec 'sh tests/run.sh' $(TESTS)

bench: deps
	@$(MAKE) --no-print-directory blt
	./blt scripts/bench.lua

fixtures:
	@$(PYTHON) -c 'import torch, h5py' 2>/dev/null || { \
	  SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO=sudo; \
	  echo "installing python3-torch python3-h5py"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq python3-torch python3-h5py; }
	$(PYTHON) scripts/reference/make_fixtures.py tests/fixtures
	$(PYTHON) scripts/reference/megabyte_ref.py tests/fixtures

demo: deps
	@$(MAKE) --no-print-directory blt
	./blt experiments/demo.lua

clean:
	rm -rf build blt
