/*
 * sr.h - the released report as a DICOM Basic Text SR (PS3.3 A.35.1) in the
 * order's study, so that any PACS or viewer that takes the study also gets
 * its report: a new series (Modality SR) of one instance, stored through
 * the archive pipeline like any other instance.
 *
 * The document: patient and study attributes copied from the index row of
 * the study, Specific Character Set ISO_IR 192 (UTF-8), Completion Flag
 * COMPLETE, Verification Flag VERIFIED with the reviewer as the verifying
 * observer, and a root CONTAINER "Diagnostic Imaging Report" (18748-4, LN)
 * holding TEXT items Findings (121071, DCM), Impression (121073, DCM) and,
 * when the report has one, "Critical finding" (CRITICAL, 99CLOUDPACS).
 * Written as Part 10 (PS3.10 7.1) in Explicit VR Little Endian.
 */
#ifndef CP_CONSULT_SR_H
#define CP_CONSULT_SR_H

#include <stdint.h>

#include "archive/archive.h"
#include "auth/directory.h"
#include "consult/order.h"
#include "consult/report.h"
#include "core/buf.h"
#include "core/status.h"
#include "index/index.h"

/* Basic Text SR Storage (PS3.4 B.5). */
#define SR_BASIC_TEXT_CLASS "1.2.840.10008.5.1.4.1.1.88.11"

/*
 * A new UUID-derived UID (PS3.5 B.2): "2.25." and the decimal value of a
 * random (version 4) UUID; cloudpacs owns no UID root of its own (see
 * DCM_IMPLEMENTATION_CLASS_UID in dicom/writer.h). out holds at least
 * INDEX_UID_MAX + 1 bytes.
 */
void sr_uid_new(char *out);

/*
 * Appends the Part 10 file of the report SR of a released version v of
 * order o to out, with the given Series and SOP Instance UIDs. The study
 * must be in the index (CP_ERR_NOT_FOUND otherwise); the reviewer's name and
 * the reading institution come from dir. now_us stamps the instance's
 * creation (0: the real clock).
 */
cp_status sr_build_report(index_db *idx, directory *dir, const order *o,
                          const report_version *v, const char *series_uid,
                          const char *sop_uid, int64_t now_us, cp_buf *out, cp_error *err);

/*
 * Builds the SR of a released version and stores it through the archive
 * as an instance of the order's requesting institution; sop_uid_out (at
 * least INDEX_UID_MAX + 1 bytes) gets its SOP Instance UID. CP_ERR_INVALID
 * when v is not released; CP_ERR_IO (with the archive's reason) when the
 * archive refused the instance.
 */
cp_status sr_store_report(archive *a, index_db *idx, directory *dir, const order *o,
                          const report_version *v, char *sop_uid_out, cp_error *err);

#endif
