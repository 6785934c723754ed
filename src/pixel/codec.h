/*
 * codec.h - the decoders behind px_decode_frame, one per family of transfer
 * syntaxes, each in its own file. Private to src/pixel: callers use
 * px_decode_frame, which picks one by transfer syntax.
 *
 * Each takes the image description and the stored bytes of one frame and
 * fills `frame` as pixel.h describes (interleaved samples in native
 * containers, masked or sign-extended to bits_stored). On failure the frame
 * is left cleared.
 */
#ifndef PX_CODEC_H
#define PX_CODEC_H

#include "pixel/pixel.h"

/* Uncompressed, every layout (native.c). Also serves Deflated Image Frame after inflating. */
cp_status px_native_decode(const px_image *img, const uint8_t *bytes, size_t len,
                           px_frame *frame, cp_error *err);

/* RLE Lossless, PS3.5 Annex G (rle.c). */
cp_status px_rle_decode(const px_image *img, const uint8_t *bytes, size_t len, px_frame *frame,
                        cp_error *err);

/* JPEG Lossless processes 14 and 14 SV1, ITU T.81 H (jpeg_lossless.c, our own decoder). */
cp_status px_jpeg_lossless_decode(const px_image *img, const uint8_t *bytes, size_t len,
                                  px_frame *frame, cp_error *err);

/* JPEG baseline and extended 8-bit through libjpeg-turbo (jpeg.c). */
cp_status px_jpeg_decode(const px_image *img, const uint8_t *bytes, size_t len, px_frame *frame,
                         cp_error *err);

/* JPEG-LS lossless and near-lossless through CharLS (jpegls.c). */
cp_status px_jpegls_decode(const px_image *img, const uint8_t *bytes, size_t len,
                           px_frame *frame, cp_error *err);

/* JPEG 2000 (Part 1 and Part 2 multi-component) through OpenJPEG (j2k.c). */
cp_status px_j2k_decode(const px_image *img, const uint8_t *bytes, size_t len, px_frame *frame,
                        cp_error *err);

/* HTJ2K through OpenJPH (htj2k.c over the C++ shim htj2k_shim.cpp). */
cp_status px_htj2k_decode(const px_image *img, const uint8_t *bytes, size_t len,
                          px_frame *frame, cp_error *err);

/*
 * Added for ingest (issue 5): encodes a decoded frame (1 or 3 samples, 8 or
 * 16-bit containers, signed or not) as a reversible HTJ2K codestream,
 * appended to out. Three samples use the reversible colour transform, so
 * the stored photometric interpretation becomes YBR_RCT (PS3.5 8.2.4).
 */
cp_status px_htj2k_encode_lossless(const px_frame *frame, cp_buf *out, cp_error *err);

/*
 * Allocates frame->data for rows x columns x samples of `type` after checking
 * the product against PX_FRAME_BYTES_MAX; sets the frame's geometry fields.
 */
cp_status px_frame_alloc(px_frame *frame, uint32_t rows, uint32_t columns, uint16_t samples,
                         px_sample_type type, cp_error *err);

/* The container type for an image's samples (pixel.h's rules). */
px_sample_type px_image_sample_type(const px_image *img);

/*
 * Added for the pixel core: masks unsigned samples of frame to bits_stored
 * and sign-extends signed ones from it, in place (integer types only), so
 * that no bit above the high bit leaks into a value (pixel.h). Sets
 * frame->bits_stored.
 */
void px_frame_fix_bits(px_frame *frame, uint16_t bits_stored);

#endif
