/* hello: greets, shows its arguments and the environment, and exits with a chosen code.
 *   hello [WORD...] [exit N]    prints "hello from a wasm container", argc, each argv[i],
 *                               every environment variable as "env K=V", then exits N (0). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

int main(int argc, char **argv) {
    int code = 0;
    printf("hello from a wasm container\n");
    printf("argc=%d\n", argc);
    for (int i = 0; i < argc; i++) {
        printf("argv[%d]=%s\n", i, argv[i]);
        if (strcmp(argv[i], "exit") == 0 && i + 1 < argc) code = atoi(argv[i + 1]);
    }
    for (char **e = environ; e && *e; e++) printf("env %s\n", *e);
    fflush(stdout);
    return code;
}
