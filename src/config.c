/* config.c - reads the `key = value` configuration file of `steward serve` (see config.h).
 *
 * The file is read whole (it is small; STW_CONFIG_MAX_BYTES caps it) and split in place: each
 * key and value becomes a NUL-terminated string inside cf->text, so entries need no copies
 * and the struct frees with two calls. Nothing here knows which keys exist: main.c checks
 * them, so a file and the flags can never accept different names.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* Reads the whole file into an owned, NUL-terminated buffer. */
static char *read_all(const char *path, size_t *len, char *msg, size_t msgcap)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0;

    if (f == NULL) {
        snprintf(msg, msgcap, "%s: %s", path, strerror(errno));
        return NULL;
    }
    for (;;) {
        size_t got;

        if (n + 4096 + 1 > cap) {
            char *nb;

            cap = cap == 0 ? 8192 : cap * 2;
            nb = realloc(buf, cap);
            if (nb == NULL) {
                snprintf(msg, msgcap, "%s: out of memory", path);
                goto fail;
            }
            buf = nb;
        }
        got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (n > STW_CONFIG_MAX_BYTES) {
            snprintf(msg, msgcap, "%s: larger than %u bytes; is this a configuration file?", path,
                     STW_CONFIG_MAX_BYTES);
            goto fail;
        }
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        snprintf(msg, msgcap, "%s: read error", path);
        goto fail;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
fail:
    fclose(f);
    free(buf);
    return NULL;
}

int config_file_load(struct config_file *cf, const char *path, char *msg, size_t msgcap)
{
    struct config_entry *entries = NULL;
    size_t len = 0, nlines = 1, i, n = 0, line = 0;
    char *text, *p, *end;

    memset(cf, 0, sizeof *cf);
    text = read_all(path, &len, msg, msgcap);
    if (text == NULL)
        return -1;
    if (memchr(text, '\0', len) != NULL) {
        snprintf(msg, msgcap, "%s: contains a NUL byte; is this a text file?", path);
        goto fail;
    }
    for (i = 0; i < len; i++)
        nlines += text[i] == '\n';
    entries = calloc(nlines, sizeof *entries);
    if (entries == NULL) {
        snprintf(msg, msgcap, "%s: out of memory", path);
        goto fail;
    }
    p = text;
    end = text + len;
    while (p < end) {
        char *eol = memchr(p, '\n', (size_t)(end - p));
        char *key, *eq, *kend, *value, *vend, *c;

        if (eol == NULL)
            eol = end;
        *eol = '\0'; /* the line is now a string */
        line++;
        key = p;
        p = eol + 1;
        while (is_blank(*key))
            key++;
        if (*key == '\0' || *key == '#')
            continue;
        /* A comment after whitespace ends the line. */
        for (c = key + 1; *c != '\0'; c++) {
            if (*c == '#' && is_blank(c[-1])) {
                *c = '\0';
                break;
            }
        }
        eq = strchr(key, '=');
        if (eq == NULL) {
            snprintf(msg, msgcap, "%s:%zu: expected 'key = value'", path, line);
            goto fail;
        }
        kend = eq;
        while (kend > key && is_blank(kend[-1]))
            kend--;
        *kend = '\0';
        value = eq + 1;
        while (is_blank(*value))
            value++;
        vend = value + strlen(value);
        while (vend > value && is_blank(vend[-1]))
            vend--;
        *vend = '\0';
        if (*key == '\0') {
            snprintf(msg, msgcap, "%s:%zu: no key before '='", path, line);
            goto fail;
        }
        if (*value == '\0') {
            snprintf(msg, msgcap, "%s:%zu: '%s' has no value", path, line, key);
            goto fail;
        }
        entries[n].key = key;
        entries[n].value = value;
        entries[n].line = line;
        n++;
    }
    cf->text = text;
    cf->entries = entries;
    cf->n = n;
    return 0;
fail:
    free(entries);
    free(text);
    return -1;
}

void config_file_release(struct config_file *cf)
{
    if (cf == NULL)
        return;
    free(cf->entries);
    free(cf->text);
    memset(cf, 0, sizeof *cf);
}
