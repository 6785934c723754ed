/*
 * transcode.h - an instance stored in an encapsulated (compressed) transfer
 * syntax rewritten as an Explicit VR Little Endian Part 10 file (PS3.5
 * A.2, PS3.10 7.1), for WADO-RS clients that ask for it (PS3.18 8.7.3.5).
 */
#ifndef CP_DICOMWEB_TRANSCODE_H
#define CP_DICOMWEB_TRANSCODE_H

#include "core/status.h"
#include "core/buf.h"
#include "dicom/io.h"
#include "pixel/pixel.h"
#include "store/store.h"

/*
 * Appends a decoded frame of img as the bytes of Explicit VR Little Endian
 * pixel data: samples interleaved, little endian in containers of bits
 * allocated, and bits allocated 1 packed again, least significant bit first.
 */
cp_status dweb_transcode_append_native(const px_image *img, const px_frame *f, cp_buf *out);

/*
 * Writes the instance stored under blob_key to sink in Explicit VR Little
 * Endian: every frame decoded in turn (one in memory at a time) into native
 * pixel data, with Photometric Interpretation set to the colour space the
 * decoder gave (YBR_FULL_422 from JPEG becomes RGB) and Planar Configuration
 * to 0. Every other element is copied as it was. CP_ERR_UNSUPPORTED when
 * the stored syntax is not encapsulated or has no decoder.
 */
cp_status dweb_transcode_native(store *st, const char *blob_key, const dcm_sink *sink,
                                cp_error *err);

#endif
