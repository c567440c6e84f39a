/* fuzz_jsonl.c - the `steward ingest` line path (ingest/ingest.c): the input is a JSONL file;
 * each line, without its "\n" or "\r\n", blank lines skipped, goes through json_parse_body +
 * json_parse_chunk with where = "line N", exactly as the loader does. */
#include "fuzz.h"
#include "limits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_text(data, size);
    char *line = text, *end = text + size;
    size_t lineno = 0;

    while (line < end) {
        char *nl = memchr(line, '\n', (size_t)(end - line));
        size_t len = nl != NULL ? (size_t)(nl - line) : (size_t)(end - line);
        char where[48];
        cJSON *tree = NULL;
        stw_chunk c;
        struct json_chunk_hold hold;
        stw_error err;
        stw_code rc;

        lineno++;
        line[len] = '\0'; /* getline keeps the "\n"; ingest strips it */
        while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n'))
            line[--len] = '\0';
        if (len == 0)
            goto next;
        memset(&err, 0, sizeof err);
        memset(&hold, 0, sizeof hold);
        snprintf(where, sizeof where, "line %zu", lineno);
        rc = json_parse_body(line, len, &tree, &err);
        fuzz_check_body(rc, line, len, tree, &err);
        if (rc != STW_OK)
            goto next;
        rc = json_parse_chunk(tree, where, &c, &hold, &err);
        if (rc != STW_OK) {
            fuzz_check_error(rc, &err);
            FUZZ_ASSERT(fuzz_zeroed(&hold, sizeof hold));
            FUZZ_ASSERT(strncmp(err.message, where, strlen(where)) == 0 ||
                        strstr(err.message, where) != NULL);
        } else {
            fuzz_check_string(c.id, 1, STW_ID_MAX);
            fuzz_check_vector(c.vector, c.dim);
            FUZZ_ASSERT(c.confidentiality >= 0);
        }
        json_chunk_hold_release(&hold);
        cJSON_Delete(tree);
    next:
        if (nl == NULL)
            break;
        line = nl + 1;
    }
    free(text);
    return 0;
}
