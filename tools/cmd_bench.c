/* packlm bench (placeholder until it lands) */
#include <stdio.h>

#include "cmds.h"

int cmd_bench(int argc, char **argv) {
    fprintf(stderr, "packlm bench: not available in this build\n");
    return 2;
}
