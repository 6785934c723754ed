/*
 * json.h - the DICOM JSON model (PS3.18 Annex F), written as a stream.
 *
 * A data set becomes {"00100010": {"vr": "PN", "Value": [...]}, ...}: text
 * decoded to UTF-8 through charset.h, person names as their Alphabetic,
 * Ideographic and Phonetic groups, numbers as JSON numbers (DS and IS too),
 * AT as "GGGGEEEE", sequences as arrays of objects, and binary values either
 * inline as InlineBinary (base64) or as a BulkDataURI given by a hook.
 * Output goes to a dcm_sink as it is produced; nothing is held whole.
 */
#ifndef DCM_JSON_H
#define DCM_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/status.h"
#include "dicom/charset.h"
#include "dicom/dataset.h"
#include "dicom/io.h"

/*
 * Called for a binary value (OB, OD, OF, OL, OV, OW, UN, and encapsulated
 * pixel data) longer than inline_max. The hook appends the URI to `uri` and
 * returns CP_OK, or returns CP_ERR_NOT_FOUND to have the value left out
 * (only "vr" written). `path` holds the tags from the top data set down to
 * the element, `depth` of them (item indexes are not included).
 */
typedef cp_status (*dcm_json_bulk_uri_fn)(void *ctx, const dcm_element *el,
                                          const uint32_t *path, size_t depth, cp_buf *uri);

typedef struct dcm_json_options {
    /* Binary values up to this many bytes are written inline (base64). */
    size_t inline_max;
    dcm_json_bulk_uri_fn bulk_uri;  /* NULL: binary values above inline_max are left out */
    void *bulk_uri_ctx;
    /* The source, to read values that were not loaded but are to be inlined. */
    dcm_source *source;
    /* How text is decoded (per-source default and override); NULL: detection on. */
    const dcm_charset_policy *charset_policy;
    /* Indent with two spaces per level (for people); compact otherwise. */
    bool pretty;
    /* Leave out the group length elements (gggg,0000) as PS3.18 F.2 says. */
    bool skip_group_length;
} dcm_json_options;

/* Writes ds as one JSON object. opts may be NULL for the defaults. */
cp_status dcm_json_write_dataset(const dcm_dataset *ds, const dcm_json_options *opts,
                                 const dcm_sink *sink, cp_error *err);

#endif
