/* fuzz_chunks.c - POST .../chunks bodies: json_parse_body + json_parse_chunk_batch (as
 * h_chunks_add), with a small batch cap so that the 413 path is reached too. */
#include "fuzz.h"
#include "limits.h"

#define FUZZ_MAX_BATCH 64

static void check_chunk(const stw_chunk *c)
{
    size_t i;

    fuzz_check_string(c->id, 1, STW_ID_MAX);
    fuzz_check_string(c->text, 1, STW_MAX_TEXT_BYTES);
    fuzz_check_vector(c->vector, c->dim);
    FUZZ_ASSERT(c->confidentiality >= 0); /* labels are required */
    FUZZ_ASSERT(c->ncompartments <= STW_MAX_LABELS);
    for (i = 0; i < c->ncompartments; i++)
        fuzz_check_string(c->compartments[i], 1, STW_LABEL_MAX);
    fuzz_check_string(c->source_system, 0, STW_ID_MAX);
    fuzz_check_string(c->subject, 0, STW_ID_MAX);
    if (c->provenance_json != NULL)
        FUZZ_ASSERT(strlen(c->provenance_json) <= STW_MAX_JSON_FIELD_BYTES);
    if (c->metadata_json != NULL)
        FUZZ_ASSERT(strlen(c->metadata_json) <= STW_MAX_JSON_FIELD_BYTES);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_text(data, size);
    cJSON *body = NULL;
    struct json_chunk_batch batch;
    stw_error err;
    stw_code rc;
    size_t i;

    memset(&err, 0, sizeof err);
    memset(&batch, 0, sizeof batch);
    rc = json_parse_body(text, size, &body, &err);
    fuzz_check_body(rc, text, size, body, &err);
    if (rc != STW_OK)
        goto done;
    rc = json_parse_chunk_batch(body, FUZZ_MAX_BATCH, &batch, &err);
    if (rc != STW_OK) {
        fuzz_check_error(rc, &err);
        FUZZ_ASSERT(fuzz_zeroed(&batch, sizeof batch));
        goto done;
    }
    FUZZ_ASSERT(batch.n >= 1 && batch.n <= FUZZ_MAX_BATCH);
    for (i = 0; i < batch.n; i++)
        check_chunk(&batch.chunks[i]);
done:
    json_chunk_batch_release(&batch);
    cJSON_Delete(body);
    free(text);
    return 0;
}
