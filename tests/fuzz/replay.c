/* replay.c - runs a fuzz target's LLVMFuzzerTestOneInput over files, without libFuzzer.
 *
 *   fuzz_<target>_replay PATH...   (each PATH a file or a folder of files)
 *
 * CTest runs it over tests/fuzz/corpus/<target>/ under the normal and the sanitizer builds,
 * so every input that once mattered (seeds, crashes found and fixed) stays a regression test.
 * A target aborts on a broken contract; the sanitizers report memory errors. Exit 0 when every
 * file ran, 1 if a path could not be read or held no files.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    size_t len = 0, cap = 0, n;

    if (f == NULL) {
        perror(path);
        return -1;
    }
    do {
        if (len == cap) {
            unsigned char *nb = realloc(buf, cap == 0 ? 4096 : cap * 2);

            if (nb == NULL) {
                fclose(f);
                free(buf);
                return -1;
            }
            buf = nb;
            cap = cap == 0 ? 4096 : cap * 2;
        }
        n = fread(buf + len, 1, cap - len, f);
        len += n;
    } while (n > 0);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, len);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    size_t files = 0;
    int i, bad = 0;

    for (i = 1; i < argc; i++) {
        struct stat st;
        DIR *d;
        struct dirent *e;

        if (stat(argv[i], &st) != 0) {
            perror(argv[i]);
            bad = 1;
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            bad |= run_file(argv[i]) != 0;
            files++;
            continue;
        }
        d = opendir(argv[i]);
        if (d == NULL) {
            perror(argv[i]);
            bad = 1;
            continue;
        }
        while ((e = readdir(d)) != NULL) {
            char path[4096];

            if (e->d_name[0] == '.')
                continue;
            snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
            bad |= run_file(path) != 0;
            files++;
        }
        closedir(d);
    }
    printf("%s: %zu inputs replayed\n", argc > 0 ? argv[0] : "replay", files);
    return bad || files == 0;
}
