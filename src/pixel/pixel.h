/*
 * pixel.h - the pixel pipeline's common types: what an image is (PS3.3
 * C.7.6.3, the Image Pixel module), where its frames are (PS3.5 8.2 and
 * A.4), and a decoded frame.
 *
 * Every decoder turns the bytes of one frame into a px_frame with the same
 * layout, whatever the transfer syntax:
 *   - samples are pixel-interleaved (R G B R G B ...), whatever the planar
 *     configuration of the source;
 *   - each sample is in the smallest native-endian container that holds
 *     bits_allocated: uint8/int8 for 1 and 8 bits, uint16/int16 for 16,
 *     uint32/int32 for 32, float/double for float pixel data;
 *   - unsigned samples are masked to bits_stored, signed ones sign-extended
 *     from bits_stored (bits above the high bit never leak into a value);
 *   - bits allocated 1 (bit-packed) gives one uint8 of 0 or 1 per pixel;
 *   - the colour space is the one the bytes are in (frame.photometric): a
 *     decoder converts only where its codec does so by nature (a JPEG
 *     baseline decoder asked for RGB), and says so; YBR_FULL_422 is
 *     upsampled to full YBR_FULL. The renderer converts to RGB.
 * Decoders never read outside the bytes they are given, never trust a
 * length in a codestream, and fail one frame without touching another.
 */
#ifndef PX_PIXEL_H
#define PX_PIXEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/status.h"
#include "dicom/dataset.h"
#include "dicom/io.h"
#include "dicom/ts.h"

typedef enum {
    PX_PHOTOMETRIC_UNKNOWN = 0,
    PX_MONOCHROME1,
    PX_MONOCHROME2,
    PX_PALETTE_COLOR,
    PX_RGB,
    PX_YBR_FULL,
    PX_YBR_FULL_422,
    PX_YBR_PARTIAL_422,
    PX_YBR_PARTIAL_420,
    PX_YBR_ICT,
    PX_YBR_RCT,
} px_photometric;

/* The value of (0028,0004) as an enum; PX_PHOTOMETRIC_UNKNOWN if unrecognised. */
px_photometric px_photometric_parse(const char *text, size_t len);
const char *px_photometric_name(px_photometric pi);

typedef enum {
    PX_U8, PX_S8, PX_U16, PX_S16, PX_U32, PX_S32, PX_F32, PX_F64,
} px_sample_type;

/* Bytes of one sample of the type. */
size_t px_sample_size(px_sample_type type);

/* One palette colour lookup table (PS3.3 C.7.6.3.1.5/6), expanded from segments if needed. */
typedef struct px_palette {
    uint32_t entries;           /* number of entries (0 in the descriptor means 65536) */
    int32_t first_mapped;       /* first input value mapped */
    uint16_t bits;              /* 8 or 16 */
    uint16_t *red, *green, *blue;   /* `entries` values each, owned by the px_image */
} px_palette;

/* What the Image Pixel module and the transfer syntax say about the pixel data. */
typedef struct px_image {
    uint32_t rows;
    uint32_t columns;
    uint32_t frames;                /* Number of Frames, 1 when absent */
    uint16_t samples_per_pixel;
    uint16_t bits_allocated;
    uint16_t bits_stored;
    uint16_t high_bit;
    bool is_signed;                 /* Pixel Representation 1 */
    uint16_t planar_configuration;  /* 0 interleaved, 1 planar */
    px_photometric photometric;
    bool float_pixels;              /* Float or Double Float Pixel Data */
    const dcm_transfer_syntax *transfer_syntax;
    const dcm_element *pixel_data;  /* the pixel data element, in the file's tree */
    bool has_palette;
    px_palette palette;             /* when photometric is PALETTE COLOR */
    /* Extended Offset Table (7FE0,0001/0002) when present: per-frame offsets and lengths. */
    uint32_t eot_count;
    const uint8_t *eot_offsets;     /* eot_count little-endian uint64 */
    const uint8_t *eot_lengths;     /* eot_count little-endian uint64, may be NULL */
    /*
     * Added for the pixel core: whether the samples of native pixel data are
     * big endian (Explicit VR Big Endian: OW values are in the data set's
     * byte order, PS3.5 7.3), and storage px_image_init allocated for
     * tables it had to read from the source (freed by px_image_clear).
     */
    bool big_endian;
    uint8_t *owned;
} px_image;

/*
 * Fills img from a data set read by dcm_file_read (with the pixel data and
 * the palette loaded or referenced). Checks that the attributes are present
 * and consistent (bits stored <= allocated, high bit = stored - 1, samples 1
 * or 3, frame size times frames within the pixel data for native syntaxes)
 * before anything is allocated; CP_ERR_MALFORMED names the attribute.
 * src reads palette data that was not loaded. Free with px_image_clear.
 */
cp_status px_image_init(px_image *img, const dcm_file *file, dcm_source *src, cp_error *err);
void px_image_clear(px_image *img);

/* Bytes of one native (uncompressed) frame: rows * columns * samples * bits / 8, rounded up. */
uint64_t px_image_native_frame_size(const px_image *img);

/*
 * Appends to out the stored bytes of frame `index` (0-based): the native
 * bytes for uncompressed syntaxes, the compressed codestream for encapsulated
 * ones. Frames are found through the Extended Offset Table, then the Basic
 * Offset Table, and by scanning fragments when neither helps (one frame per
 * fragment when there are as many fragments as frames; else by codestream
 * start markers: JPEG FFD8, JPEG 2000 FF4F, ...). Reads only what that frame
 * needs from src.
 */
cp_status px_frame_bytes(const px_image *img, dcm_source *src, uint32_t index, cp_buf *out,
                         cp_error *err);

/* A decoded frame; data owned by the frame (free with px_frame_clear). */
typedef struct px_frame {
    uint32_t rows;
    uint32_t columns;
    uint16_t samples_per_pixel;
    uint16_t bits_stored;
    px_sample_type type;
    px_photometric photometric;     /* the colour space the samples are in */
    uint8_t *data;                  /* rows * columns * samples * px_sample_size(type) bytes */
    size_t size;
} px_frame;

void px_frame_clear(px_frame *frame);

/*
 * Decodes the stored bytes of one frame (as px_frame_bytes gives them) of img
 * into frame. Dispatches on img->transfer_syntax; CP_ERR_UNSUPPORTED for a
 * syntax without a decoder, CP_ERR_MALFORMED (with a detail) for a corrupt
 * codestream.
 */
cp_status px_decode_frame(const px_image *img, const uint8_t *bytes, size_t len,
                          px_frame *frame, cp_error *err);

/* Whether a decoder exists for the transfer syntax. */
bool px_can_decode(const dcm_transfer_syntax *ts);

#endif
