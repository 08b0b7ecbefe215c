/* packlm generate (placeholder until it lands) */
#include <stdio.h>

#include "cmds.h"

int cmd_generate(int argc, char **argv) {
    fprintf(stderr, "packlm generate: not available in this build\n");
    return 2;
}
