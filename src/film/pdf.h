/*
 * pdf.h - the printable report: one or more A4 pages drawn with cairo (a
 * PDF surface) and laid out with pango in "Noto Sans CJK SC" (embedded as a
 * subset), so Chinese names and texts print as they were written. The
 * page carries the institution's header, the patient and exam data, the
 * findings and impression, the critical-finding mark, the author's and
 * reviewer's names and times, the QR code of the share link (vector
 * squares, libqrencode) with a line saying what it is for, up to
 * PDF_IMAGES_MAX key images in a row below the impression (added: the
 * caller renders them; see pdf_image), and a footer with the fingerprint
 * of the report's signature.
 *
 * The same PDF can go into the archive as a DICOM Encapsulated PDF
 * instance (PS3.3 A.45.1, SOP Class 1.2.840.10008.5.1.4.1.1.104.1) in a
 * new series of the study, written as Part 10 (PS3.10 7.1) in Explicit VR
 * Little Endian, so any PACS that takes the study takes the printed report.
 *
 * Nothing here reads the order, the report or the index: the caller fills
 * a pdf_report from them (order.h, report.h, index.h, directory.h). Text
 * is UTF-8; NULL prints as nothing.
 */
#ifndef CP_FILM_PDF_H
#define CP_FILM_PDF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "archive/archive.h"
#include "core/buf.h"
#include "core/status.h"
#include "index/index.h"

/* Encapsulated PDF Storage (PS3.4 B.5). */
#define PDF_ENCAPSULATED_CLASS "1.2.840.10008.5.1.4.1.1.104.1"

/* The font family every text is set in. */
#define PDF_FONT_FAMILY "Noto Sans CJK SC"

/* The line under the QR code when pdf_report.qr_caption is NULL. */
#define PDF_QR_CAPTION "扫码查看影像和报告 / Scan to see your images and report"

/* Bytes of a signature fingerprint with its NUL (see pdf_fingerprint). */
#define PDF_FINGERPRINT_SIZE 48

/* Key images printed at most; the rest of pdf_report.images is left out. */
#define PDF_IMAGES_MAX 4

/* The largest side of a key image in pixels. */
#define PDF_IMAGE_SIDE_MAX 4096

/*
 * A key image, rendered already (e.g. sheet_image_load with the file's own
 * window): width x height pixels of channels bytes each (1: grey, 3: RGB),
 * row by row from the top. Printed fitted to a quarter of the text width,
 * aspect kept, on black, with its caption under it.
 */
typedef struct pdf_image {
    uint32_t width;
    uint32_t height;
    uint16_t channels;
    const uint8_t *data;
    const char *caption;                /* "序列 2 图像 14 / Series 2 Image 14"; NULL: none */
} pdf_image;

typedef struct pdf_report {
    const char *institution;            /* the header: the requesting institution's name */
    const char *title;                  /* NULL: "影像诊断报告 / Imaging Report" */

    /* The patient, as the index has them; the name in the patient's own script. */
    const char *patient_name;
    const char *patient_id;
    const char *sex;                    /* "F", "M", "O" or text */
    const char *birth_date;             /* YYYYMMDD, printed YYYY-MM-DD */

    /* The exam. */
    const char *accession;
    const char *study_date;             /* YYYYMMDD */
    const char *modality;               /* "CT" */
    const char *body_part;              /* "CHEST" */
    const char *study_description;
    const char *reading_institution;    /* who read it; NULL: not printed */

    /* The report (report_version). */
    const char *findings;
    const char *impression;
    bool critical;                      /* prints the critical-finding mark */
    const char *author;                 /* names (directory_user display names) */
    const char *reviewer;
    int64_t written_us;                 /* 0: not printed */
    int64_t reviewed_us;
    int64_t released_us;
    /* report_version.signature (base64); "" or NULL: "not signed" in the footer. */
    const char *signature;

    /* The QR code: the share URL (share_url); NULL or "": no QR code. */
    const char *share_url;
    const char *qr_caption;             /* NULL: PDF_QR_CAPTION */
    /* A line under the caption, e.g. "验证: 出生日期 / Verify with: birth date". */
    const char *qr_note;

    /* Added: key images below the impression (image_count 0: none). */
    const pdf_image *images;
    size_t image_count;
} pdf_report;

/*
 * Renders the report as a PDF appended to out (nothing is appended on
 * failure). CP_ERR_LIMIT when a text is over PDF_TEXT_MAX bytes or
 * PDF_LINES_MAX lines, or the pages over PDF_PAGES_MAX; CP_ERR_INVALID for
 * a text that is not UTF-8, a share URL over SHARE_URL_MAX, or a key image
 * without pixels, with 0 or over PDF_IMAGE_SIDE_MAX pixels a side, or
 * channels other than 1 and 3. Safe to call
 * from several threads at once.
 */
cp_status pdf_render(const pdf_report *r, cp_buf *out, cp_error *err);

/* pdf_render into a file at path (written whole or not at all: a temporary name, then rename). */
cp_status pdf_render_file(const pdf_report *r, const char *path, cp_error *err);

/*
 * The QR code of text alone as a PNG appended to out: module_px pixels a
 * module (0: 8), with the four-module quiet zone, black on white. For the
 * patient's page and for tests.
 */
cp_status pdf_qr_png(const char *text, unsigned module_px, cp_buf *out, cp_error *err);

/*
 * The fingerprint printed in the footer: the first 16 bytes of BLAKE2b-256
 * over the decoded signature, as 8 groups of 4 upper-case hex digits joined
 * by spaces ("1A2B 3C4D ..."). "" when the signature is not base64.
 */
void pdf_fingerprint(const char *signature_b64, char out[PDF_FINGERPRINT_SIZE]);

typedef struct pdf_document_info {
    const index_row *row;               /* the study's row: patient and study attributes */
    const char *series_uid;             /* the new series */
    const char *sop_uid;                /* the new instance */
    const char *title;                  /* Document Title (0042,0010); NULL: "Imaging Report" */
    int64_t now_us;                     /* Content Date and Time; 0: the real clock */
} pdf_document_info;

/*
 * Appends to out the Part 10 file of a DICOM Encapsulated PDF instance
 * holding the len bytes of pdf (Modality DOC, Conversion Type WSD, Burned
 * In Annotation YES, MIME type application/pdf, Specific Character Set
 * ISO_IR 192). CP_ERR_INVALID for invalid UIDs or bytes that do not start
 * with "%PDF-"; CP_ERR_LIMIT over PDF_FILE_MAX.
 */
cp_status pdf_encapsulate(const pdf_document_info *info, const void *pdf, size_t len,
                          cp_buf *out, cp_error *err);

/*
 * Encapsulates pdf for the study study_uid (which must be in the index:
 * CP_ERR_NOT_FOUND otherwise) in a new series and stores it through the
 * archive as an instance of institution_id. sop_uid_out (at least
 * INDEX_UID_MAX + 1 bytes) gets its SOP Instance UID. CP_ERR_IO (with the
 * archive's reason) when the archive refused it.
 */
cp_status pdf_store(archive *a, index_db *idx, const char *study_uid, int64_t institution_id,
                    const char *title, const void *pdf, size_t len, char *sop_uid_out,
                    cp_error *err);

#endif
