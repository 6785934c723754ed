/*
 * qido.h - QIDO-RS, the Search transaction (PS3.18 10.6): the query
 * parameters of 8.3.4 turned into an index query, and each index row
 * turned into its result data set in the DICOM JSON model (PS3.18 F.2),
 * with the return attributes of Tables 10.6.3-3 to 10.6.3-5.
 *
 * Parsing and row formatting take plain values, so that they can be tested
 * without a server; dweb_qido_handle is the route handler.
 */
#ifndef CP_DICOMWEB_QIDO_H
#define CP_DICOMWEB_QIDO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/limits.h"
#include "core/status.h"
#include "http/http.h"
#include "index/index.h"

/* One query parameter as the request had it (percent-decoded). */
typedef struct dweb_param {
    const char *name;
    const char *value;
} dweb_param;

/* A parsed search; the terms point into the params and path values given. */
typedef struct dweb_qido {
    index_level level;
    index_term terms[INDEX_QUERY_TERMS_MAX];
    size_t term_count;
    unsigned flags;                     /* INDEX_QUERY_FUZZY */
    uint64_t limit;                     /* what the client asked; 0 = none */
    uint64_t offset;
    bool all_fields;                    /* includefield=all */
    bool study_fixed;                   /* the study is in the path */
    bool series_fixed;                  /* the series is in the path */
    uint32_t include[DWEB_INCLUDE_MAX]; /* tags asked for with includefield */
    size_t include_count;
    char ignored[DWEB_WARNING_MAX];     /* keys not supported, for a Warning header */
} dweb_qido;

/*
 * Parses a search at `level`; study and series (NULL when absent) are the
 * UIDs of the path. CP_ERR_INVALID with a detail in err (fit for a 400
 * body, no patient data) for a parameter that is not understood.
 */
cp_status dweb_qido_parse(index_level level, const char *study, const char *series,
                          const dweb_param *params, size_t count, dweb_qido *out,
                          cp_error *err);

/*
 * Appends the result data set of one row as a JSON object; root is the
 * service root URL for RetrieveURL (see dweb_root_url).
 */
cp_status dweb_qido_row_json(const dweb_qido *q, const index_row *row, const char *root,
                             cp_buf *out);

/* The route handler; ctx is the dweb_service. */
cp_status dweb_qido_handle(http_request *req, void *ctx);

#endif
