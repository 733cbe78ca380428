/* grow: allocates memory 1 MiB at a time (touching each page) until malloc fails or MAX MiB.
 *   grow [MAX]   (default 3072) -> "grow: allocation failed after N MiB", exit 42
 *                                  or "grow: allocated N MiB", exit 0 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_ALLOC_FAILED 42
#define MAX_BLOCKS 65536

/* The blocks escape through a volatile array, so the compiler cannot elide the allocations. */
static char *volatile blocks[MAX_BLOCKS];

int main(int argc, char **argv) {
    long max = argc > 1 ? atol(argv[1]) : 3072;
    if (max > MAX_BLOCKS) max = MAX_BLOCKS;
    long n = 0;
    for (; n < max; n++) {
        char *p = malloc(1 << 20);
        if (!p) {
            printf("grow: allocation failed after %ld MiB\n", n);
            return EXIT_ALLOC_FAILED;
        }
        memset(p, 1, 1 << 20);
        blocks[n] = p;
    }
    printf("grow: allocated %ld MiB\n", n);
    return 0;
}
