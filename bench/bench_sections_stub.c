/* Placeholder sections until their implementations land (each is replaced by its own file). */
#include <stdio.h>

#include "bench.h"

