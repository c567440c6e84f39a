/* config.h - the `steward serve` configuration file: `key = value` lines.
 *
 * This module only reads the file; main.c knows the keys (the flag names without "--") and
 * applies each entry with the same code as the flags and environment variables, in the order
 * defaults < config file < environment < flags (docs/config.md).
 *
 * Syntax, one setting per line:
 *     # a comment line
 *     listen = 127.0.0.1:8080
 *     threads = 4            # a comment after whitespace
 * Blank lines and lines whose first non-blank character is '#' are skipped. Elsewhere '#'
 * starts a comment only after a space or tab, so a value may contain '#' ("a#b"). Keys and
 * values are trimmed of spaces and tabs; a value may not be empty. A key may repeat: later
 * lines win, except purpose-rule, which accumulates like the flag.
 */
#ifndef STW_CONFIG_H
#define STW_CONFIG_H

#include <stddef.h>

#define STW_CONFIG_MAX_BYTES (1024u * 1024u) /* a larger file is refused */

struct config_entry {
    const char *key;   /* borrowed from config_file.text */
    const char *value; /* borrowed from config_file.text */
    size_t line;       /* 1-based line number, for messages */
};

/* Caller-allocated; filled by config_file_load, emptied by config_file_release. */
struct config_file {
    char *text;                   /* owned: the file, split in place into keys and values */
    struct config_entry *entries; /* owned array of n, in file order */
    size_t n;
};

/* Reads and splits the file at path into *cf. Returns 0, or -1 with a one-line message in
 * msg (e.g. "steward.conf:3: expected 'key = value'") and *cf left empty. Does not check the
 * keys. Thread: any (no shared state). */
int config_file_load(struct config_file *cf, const char *path, char *msg, size_t msgcap);

/* Frees what config_file_load made; the entries' strings die with it. Leaves *cf empty.
 * Safe on an empty or zeroed struct. */
void config_file_release(struct config_file *cf);

#endif
