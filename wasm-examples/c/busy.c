/* busy: a tight loop with no host calls, for kill and CPU-limit tests.
 *   busy        print "busy: spinning", then spin forever
 *   busy N      spin N million iterations, then print "busy: done" and exit 0 */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    volatile unsigned long counter = 0;
    unsigned long limit = argc > 1 ? strtoul(argv[1], 0, 10) * 1000000UL : 0;
    printf("busy: spinning\n");
    fflush(stdout);
    while (limit == 0 || counter < limit) counter++;
    printf("busy: done\n");
    return 0;
}
