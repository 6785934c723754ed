/*
 * render.h - from decoded samples to an 8-bit picture (PS3.3 C.11 and
 * PS3.4 N.2, the grayscale and colour pipelines), and from that picture to
 * JPEG or PNG for browsers, thumbnails and film.
 *
 * Grayscale: Modality LUT (rescale slope and intercept, or a Modality LUT
 * Sequence), then VOI LUT (window centre and width with LINEAR,
 * LINEAR_EXACT or SIGMOID, or a VOI LUT Sequence), then the presentation
 * LUT shape (IDENTITY or INVERSE; MONOCHROME1 is inverted), then scaling to
 * the viewport. Colour: palette lookup or YBR to RGB, then scaling.
 */
#ifndef PX_RENDER_H
#define PX_RENDER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/status.h"
#include "dicom/dataset.h"
#include "pixel/pixel.h"

typedef enum {
    PX_VOI_LINEAR,
    PX_VOI_LINEAR_EXACT,
    PX_VOI_SIGMOID,
} px_voi_function;

/* An 8-bit picture: grey (1 channel) or RGB (3), rows of width * channels bytes. */
typedef struct px_picture {
    uint32_t width;
    uint32_t height;
    uint16_t channels;
    uint8_t *data;          /* owned; free with px_picture_clear */
} px_picture;

void px_picture_clear(px_picture *pic);

typedef struct px_render_params {
    /* Window from the request; when has_window is false the data set's first window is used,
     * then its VOI LUT Sequence, then the frame's min/max. */
    bool has_window;
    double window_center;
    double window_width;
    px_voi_function voi_function;
    /* Fit within viewport_width x viewport_height keeping the aspect ratio (0: natural size). */
    uint32_t viewport_width;
    uint32_t viewport_height;
    /* Invert the output (on top of MONOCHROME1's inversion). */
    bool invert;
} px_render_params;

/*
 * The presentation attributes of an image that rendering needs, read from a
 * data set (and for multi-frame, from the shared and per-frame functional
 * groups): rescale, modality LUT, windows and their functions, VOI LUTs,
 * presentation LUT shape. Owned by the caller; free with px_presentation_clear.
 */
typedef struct px_presentation px_presentation;

cp_status px_presentation_create(const dcm_dataset *ds, dcm_source *src, uint32_t frame_index,
                                 px_presentation **out, cp_error *err);
void px_presentation_destroy(px_presentation *pres);

/* Renders a decoded frame into pic. params NULL means the defaults above. */
cp_status px_render(const px_image *img, const px_presentation *pres, const px_frame *frame,
                    const px_render_params *params, px_picture *pic, cp_error *err);

/* Encodes pic as baseline JPEG with quality 1-100 (libjpeg-turbo), appended to out. */
cp_status px_encode_jpeg(const px_picture *pic, int quality, cp_buf *out, cp_error *err);

/* Encodes pic as PNG (libpng), appended to out. */
cp_status px_encode_png(const px_picture *pic, cp_buf *out, cp_error *err);

#endif
