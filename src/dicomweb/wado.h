/*
 * wado.h - WADO-RS, the Retrieve transaction (PS3.18 10.4): instances of a
 * study, a series or one instance as multipart/related Part 10 files
 * (10.4.1.1.1 to .3), their metadata in the DICOM JSON model (10.4.1.1.2,
 * Annex F), one bulk data value (10.4.1.1.5) and frames (10.4.1.1.6).
 *
 * Bulk data values in metadata are given as BulkDataURIs of the form
 * {instance URL}/bulkdata/{offset}-{length}: the byte range of the value in
 * the stored Part 10 file, which the bulkdata route sends as it is.
 */
#ifndef CP_DICOMWEB_WADO_H
#define CP_DICOMWEB_WADO_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"
#include "dicom/ts.h"
#include "http/accept.h"
#include "http/http.h"

/* Route handlers; ctx is the dweb_service. */
cp_status dweb_wado_retrieve(http_request *req, void *ctx);
cp_status dweb_wado_metadata(http_request *req, void *ctx);
cp_status dweb_wado_frames(http_request *req, void *ctx);
cp_status dweb_wado_bulkdata(http_request *req, void *ctx);

/*
 * The transfer syntax to send an instance stored in `stored` in, given the
 * client's choice (NULL, "" or "*": as stored). NULL when it cannot be done
 * (406): only the stored syntax, or Explicit VR Little Endian made from an
 * uncompressed one, is offered.
 */
const dcm_transfer_syntax *dweb_wado_pick_syntax(const dcm_transfer_syntax *stored,
                                                 const char *asked);

/*
 * Parses a frame list ("1,3,5", 1-based) into frames (at most max of them).
 * CP_ERR_INVALID for an empty list, a zero or a non-number.
 */
cp_status dweb_wado_parse_frames(const char *list, uint32_t *frames, size_t max,
                                 size_t *count);

#endif
