/*
 * qr.h - the Query/Retrieve service class as SCP (PS3.4 Annex C): C-FIND
 * in the Patient Root and Study Root information models at every level,
 * answered from the index; C-MOVE to configured AEs and C-GET on the
 * calling association, with instances streamed from the blob store as
 * C-STORE sub-operations (PS3.7 9.1.1).
 *
 * The server (scp.h) gathers the identifier and calls qr_serve with it;
 * this module turns the identifier into index terms, encodes each match
 * as a response identifier in the query's character set, and drives the
 * sub-operations. The identifier functions are public for the tests.
 */
#ifndef CP_NET_QR_H
#define CP_NET_QR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/limits.h"
#include "core/status.h"
#include "dicom/vr.h"
#include "index/index.h"
#include "net/assoc.h"
#include "net/scp.h"
#include "store/store.h"

/* Query/Retrieve levels (PS3.4 C.3). */
typedef enum qr_level {
    QR_LEVEL_PATIENT,
    QR_LEVEL_STUDY,
    QR_LEVEL_SERIES,
    QR_LEVEL_IMAGE,
} qr_level;

/* Information models (PS3.4 C.3.1, C.3.2). */
typedef enum qr_model {
    QR_MODEL_PATIENT_ROOT,
    QR_MODEL_STUDY_ROOT,
} qr_model;

/* One key of an identifier: its tag, VR and value decoded to UTF-8. */
typedef struct qr_key {
    uint32_t tag;
    dcm_vr vr;
    char *value;                        /* NUL-terminated, padding removed */
} qr_key;

/* An identifier taken apart. Free with qr_query_free. */
typedef struct qr_query {
    qr_model model;
    qr_level level;
    char charset[65];                   /* the query's (0008,0005), "" when none */
    qr_key keys[QR_KEYS_MAX];
    size_t key_count;
    index_term terms[INDEX_QUERY_TERMS_MAX];
    size_t term_count;
    bool unsupported;                   /* a key with a value the index cannot match */
} qr_query;

/*
 * Parses the identifier (len bytes in transfer syntax ts_uid) of a request
 * for sop_class into q. On failure *status is the DIMSE status to answer
 * (A900 no or bad level or a unique key missing, C000 unreadable bytes)
 * and err says why, without patient data.
 */
cp_status qr_query_parse(const char *sop_class, const uint8_t *data, size_t len,
                         const char *ts_uid, qr_query *q, uint16_t *status, cp_error *err);

void qr_query_free(qr_query *q);

/* The index level a query level is answered at (PATIENT: study rows grouped). */
index_level qr_index_level(qr_level level);

/*
 * Appends to out the response identifier for one match: every key of the
 * query, with the row's value where the index has one (empty otherwise),
 * the level, and the character set. Text is encoded in the query's
 * character set; when it cannot hold a value, or the query named none and
 * a value is not ASCII, the identifier is in UTF-8 (ISO_IR 192) instead.
 * patient_studies is NumberOfPatientRelatedStudies for patient rows.
 */
cp_status qr_encode_row(const qr_query *q, const index_row *row, uint32_t patient_studies,
                        const char *retrieve_ae, const char *ts_uid, cp_buf *out);

/* The service. */
typedef struct qr_config {
    index_db *idx;
    store *st;
    const char *ae_title;               /* ours: calling AE of C-MOVE associations */
    assoc_params params;                /* for C-MOVE associations */
} qr_config;

typedef struct qr qr;

cp_status qr_create(const qr_config *cfg, qr **out);
void qr_destroy(qr *q);

/* scp_qr_service.run, with ctx a qr. */
void qr_serve(void *ctx, scp_qr_call *call);

#endif
