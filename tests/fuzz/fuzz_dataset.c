/*
 * fuzz_dataset.c - libFuzzer target for the data-set reader (dataset.c), the
 * pull parser (parser.c) and the byte sources (io.c): PS3.10 files and bare
 * PS3.5 data sets in every transfer syntax, deflate included.
 *
 * Each input is read three ways: as a Part 10 file from memory with a small
 * bulk threshold (so values are left in the source and read back), as a bare
 * data set, and through a forward-only source that cannot pread (so every
 * value is loaded and lengths cannot be checked against the size). Every
 * element of the tree is then walked through every getter.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dicom/dataset.h"
#include "dicom/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Getters touched per element are capped so that big arrays do not slow fuzzing. */
#define WALK_VALUES_MAX 8

typedef struct {
    const uint8_t *data;
    size_t size;
    size_t pos;
} stream_ctx;

static cp_status stream_read(void *ctx, void *buf, size_t len, size_t *got)
{
    stream_ctx *s = ctx;
    size_t n = s->size - s->pos < len ? s->size - s->pos : len;

    memcpy(buf, s->data + s->pos, n);
    s->pos += n;
    *got = n;
    return CP_OK;
}

static const dcm_source_ops stream_ops = { stream_read, NULL, NULL };

static void walk_element(const dcm_dataset *ds, const dcm_element *el, dcm_source *src,
                         cp_buf *scratch)
{
    uint64_t u;
    int64_t i;
    double d;
    const char *text;
    size_t len, count;
    cp_error err;

    for (size_t k = 0; k < WALK_VALUES_MAX; k++) {
        cp_status st = dcm_element_get_uint(ds, el, k, &u);

        dcm_element_get_int(ds, el, k, &i);
        dcm_element_get_double(ds, el, k, &d);
        if (st == CP_ERR_NOT_FOUND || st == CP_ERR_INVALID)
            break;
    }

    count = dcm_element_string_count(el);
    for (size_t k = 0; k < count && k < WALK_VALUES_MAX; k++) {
        if (dcm_element_get_string(el, k, &text, &len) == CP_OK && len > 0)
            u += (uint8_t)text[len - 1];
    }

    if (el->flags & DCM_ELEMENT_NOT_LOADED && src != NULL) {
        cp_error_clear(&err);
        dcm_element_read_value(el, src, scratch, &err);
    }
    for (uint32_t k = 0; k < el->fragment_count; k++) {
        if (el->fragments[k].data != NULL && el->fragments[k].length > 0)
            u += el->fragments[k].data[el->fragments[k].length - 1];
    }
    (void)u;
}

static void walk(const dcm_dataset *ds, dcm_source *src, cp_buf *scratch)
{
    const uint8_t *cs;
    size_t cs_len;
    char text[16];

    dcm_dataset_charset(ds, &cs, &cs_len);
    dcm_dataset_get_string(ds, DCM_TAG(0x0010, 0x0010), text, sizeof text);
    dcm_dataset_get(ds, DCM_TAG_PIXEL_DATA);
    dcm_dataset_parent(ds);
    dcm_dataset_item_length(ds);

    for (size_t k = 0; k < dcm_dataset_count(ds); k++) {
        const dcm_element *el = dcm_dataset_at(ds, k);

        walk_element(ds, el, src, scratch);
        for (uint32_t j = 0; j < el->item_count; j++)
            walk(el->items[j], src, scratch);
    }
}

static void read_and_walk(dcm_source *src, const dcm_read_options *opts)
{
    cp_buf scratch = CP_BUF_INIT;
    dcm_file *file = NULL;
    cp_error err;

    if (src == NULL)
        return;
    cp_error_clear(&err);
    dcm_file_read(src, opts, &file, &err);
    if (file != NULL) {
        if (file->meta != NULL)
            walk(file->meta, src, &scratch);
        walk(file->dataset, dcm_source_can_pread(src) ? src : NULL, &scratch);
    }
    dcm_file_destroy(file);
    cp_buf_free(&scratch);
    dcm_source_destroy(src);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dcm_read_options opts = { .bulk_threshold = 16 };
    stream_ctx ctx = { data, size, 0 };

    read_and_walk(dcm_source_from_memory(data, size), &opts);

    opts.no_meta = true;
    read_and_walk(dcm_source_from_memory(data, size), &opts);

    opts.no_meta = false;
    opts.bulk_threshold = 0;
    opts.stop_before = DCM_TAG_PIXEL_DATA;
    read_and_walk(dcm_source_create(&stream_ops, &ctx), &opts);
    return 0;
}
