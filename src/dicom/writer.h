/*
 * writer.h - writes data sets and Part 10 files (PS3.10 section 7) in the
 * uncompressed transfer syntaxes: Implicit VR Little Endian, Explicit VR
 * Little Endian, Explicit VR Big Endian and Deflated Explicit VR Little
 * Endian. Encapsulated pixel data is written as it was read, so a file in a
 * compressed syntax is written back in the same syntax.
 *
 * Reading then writing an unmodified file in its own transfer syntax gives
 * the same bytes: lengths (defined or undefined), padding and item structure
 * are kept as read. Values kept as references are streamed from the source.
 */
#ifndef DCM_WRITER_H
#define DCM_WRITER_H

#include "core/status.h"
#include "dicom/dataset.h"
#include "dicom/io.h"
#include "dicom/ts.h"
#include "dicom/vr.h"

/*
 * Added for the writer: cloudpacs's Implementation Class UID (PS3.7 D.3.3.2,
 * written as (0002,0012) in the meta groups it builds). cloudpacs owns no UID
 * root, so this is a UUID-derived UID (PS3.5 B.2): "2.25." and the decimal
 * value of one random 128-bit UUID drawn once for the project. It identifies
 * cloudpacs's implementation and must never change; a new version of the
 * implementation changes DCM_IMPLEMENTATION_VERSION_NAME instead.
 */
#define DCM_IMPLEMENTATION_CLASS_UID "2.25.289173607976800910854861726003894883763"

/* Added for the writer: (0002,0013), an SH of at most 16 characters. */
#define DCM_IMPLEMENTATION_VERSION_NAME "CLOUDPACS_010"

typedef struct dcm_write_options {
    /* The source the file was read from, for values not loaded; NULL if all are loaded. */
    dcm_source *source;
    /*
     * The transfer syntax to write the data set in; NULL keeps the file's own.
     * Changing between uncompressed syntaxes is allowed; to or from an
     * encapsulated syntax is CP_ERR_UNSUPPORTED (the pixel layer transcodes).
     */
    const dcm_transfer_syntax *transfer_syntax;
} dcm_write_options;

/*
 * Writes file as Part 10: its preamble, "DICM", its meta group (with the
 * group length and Transfer Syntax UID updated when the syntax changes) and
 * its data set. When file->meta is NULL, a meta group is built from the data
 * set (SOP Class and Instance UIDs) with cloudpacs's implementation UID.
 */
cp_status dcm_write_file(const dcm_file *file, const dcm_write_options *opts,
                         const dcm_sink *sink, cp_error *err);

/* Writes a bare data set (no preamble or meta group) in transfer syntax ts. */
cp_status dcm_write_dataset(const dcm_dataset *ds, const dcm_transfer_syntax *ts,
                            dcm_source *source, const dcm_sink *sink, cp_error *err);

/* Added for the writer: the longest element header (tag, VR, 2 reserved bytes, length). */
#define DCM_WRITE_HEADER_MAX 12

/*
 * Added for the writer: encodes the header of an element, item or delimiter
 * (PS3.5 7.1.1 to 7.1.3, 7.5) into out and returns its size. Implicit VR:
 * tag and a 32-bit length. Explicit VR: tag, VR and a 16-bit length, or 2
 * reserved bytes and a 32-bit length for the VRs with long headers. Tags of
 * group FFFE never carry a VR. DCM_VR_NONE is written as UN, and so is a VR
 * whose 16-bit length field cannot hold length (PS3.5 6.2.2).
 */
size_t dcm_write_header(uint8_t out[DCM_WRITE_HEADER_MAX], uint32_t tag, dcm_vr vr,
                        uint32_t length, bool explicit_vr, bool big_endian);

/*
 * Added for the writer: converts len bytes of values of vr between little
 * and big endian in place, reversing each unit of dcm_vr_swap_unit(vr) bytes
 * (AT as two 16-bit halves, PS3.5 7.3). A trailing partial unit, which only
 * a malformed value has, is left as it is.
 */
void dcm_write_swap(dcm_vr vr, uint8_t *data, size_t len);

/*
 * Added for the writer: appends to out the File Meta Information (PS3.10
 * 7.1) of a data set in syntax ts, in Explicit VR Little Endian: group
 * length, version 00 01, the SOP Class and Instance UIDs given (len bytes
 * each, trailing NUL or space padding ignored), ts's UID, and cloudpacs's
 * implementation class UID and version name. CP_ERR_INVALID when a UID is
 * empty or longer than 64 bytes.
 */
cp_status dcm_write_meta_group(const char *sop_class_uid, size_t class_len,
                               const char *sop_instance_uid, size_t instance_len,
                               const dcm_transfer_syntax *ts, cp_buf *out);

#endif
