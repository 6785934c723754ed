/*
 * stow.h - STOW-RS, the Store transaction (PS3.18 10.5): a
 * multipart/related; type="application/dicom" body streamed part by part
 * into the archive's ingest pipeline, and the Store Instances Response
 * Module (PS3.18 Annex I) in the DICOM JSON model as the answer.
 */
#ifndef CP_DICOMWEB_STOW_H
#define CP_DICOMWEB_STOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/limits.h"
#include "core/status.h"
#include "http/http.h"

/* Failure Reason (0008,1197) values of PS3.18 Table I.2-2. */
#define DWEB_FAIL_PROCESSING   0x0110u
#define DWEB_FAIL_SOP_CLASS    0x0122u
#define DWEB_FAIL_RESOURCES    0xA700u
#define DWEB_FAIL_MISMATCH     0xA900u
#define DWEB_FAIL_UNDERSTAND   0xC000u

/* One instance of the request, stored or failed. */
typedef struct dweb_stow_item {
    char sop_class_uid[INDEX_UID_MAX + 1];
    char sop_instance_uid[INDEX_UID_MAX + 1];
    char study_uid[INDEX_UID_MAX + 1];
    char series_uid[INDEX_UID_MAX + 1];
    bool stored;
    uint16_t failure;           /* DWEB_FAIL_* when not stored */
} dweb_stow_item;

/*
 * The HTTP status of PS3.18 Table 10.5.3-1 for the outcome: 200 when all
 * were stored, 202 when some, 409 when none (400 when there were none).
 */
int dweb_stow_status(const dweb_stow_item *items, size_t count);

/*
 * Appends the response data set: RetrieveURL of the study (when study_uid
 * is not NULL), FailedSOPSequence (0008,1198) and ReferencedSOPSequence
 * (0008,1199), each item with its SOP Class and Instance UIDs, and
 * RetrieveURL or FailureReason. root is the service root URL.
 */
cp_status dweb_stow_response_json(const dweb_stow_item *items, size_t count,
                                  const char *root, const char *study_uid, cp_buf *out);

/* The route handler; ctx is the dweb_service. */
cp_status dweb_stow_handle(http_request *req, void *ctx);

#endif
