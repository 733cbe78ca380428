/* files: file operations through WASI preopens, one after another, stopping at the first
 * failure (message on stderr, exit 1; bad usage exits 2).
 *   files read PATH             print the file's contents
 *   files write PATH TEXT       create/truncate PATH with TEXT and a newline
 *   files ls DIR                list DIR's entries (sorted, without . and ..)
 * e.g. files read /etc/greeting.txt write /data/out.txt hi ls /data */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int do_read(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) { fprintf(stderr, "files: read %s: %s\n", path, strerror(errno)); return 1; }
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) fwrite(buf, 1, n, stdout);
    fclose(f);
    return 0;
}

static int do_write(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) { fprintf(stderr, "files: write %s: %s\n", path, strerror(errno)); return 1; }
    if (fprintf(f, "%s\n", text) < 0 || fclose(f) != 0) {
        fprintf(stderr, "files: write %s: %s\n", path, strerror(errno));
        return 1;
    }
    printf("wrote %zu bytes to %s\n", strlen(text) + 1, path);
    return 0;
}

static int do_ls(const char *path) {
    DIR *d = opendir(path);
    if (!d) { fprintf(stderr, "files: ls %s: %s\n", path, strerror(errno)); return 1; }
    char *names[1024];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 1024) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof names[0], cmp);
    printf("ls %s:", path);
    for (int i = 0; i < n; i++) { printf(" %s", names[i]); free(names[i]); }
    printf("\n");
    return 0;
}

int main(int argc, char **argv) {
    int i = 1;
    if (argc < 2) { fprintf(stderr, "usage: files (read PATH | write PATH TEXT | ls DIR)...\n"); return 2; }
    while (i < argc) {
        int rc;
        if (!strcmp(argv[i], "read") && i + 1 < argc) { rc = do_read(argv[i + 1]); i += 2; }
        else if (!strcmp(argv[i], "write") && i + 2 < argc) { rc = do_write(argv[i + 1], argv[i + 2]); i += 3; }
        else if (!strcmp(argv[i], "ls") && i + 1 < argc) { rc = do_ls(argv[i + 1]); i += 2; }
        else { fprintf(stderr, "files: bad operation %s\n", argv[i]); return 2; }
        fflush(stdout);
        if (rc) return rc;
    }
    return 0;
}
