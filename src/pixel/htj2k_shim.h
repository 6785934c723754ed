/*
 * htj2k_shim.h - the C face of htj2k_shim.cpp, the one C++ file of
 * cloudpacs, which drives OpenJPH (a C++ library) to decode and encode
 * High-Throughput JPEG 2000 codestreams (ITU T.814, PS3.5 A.4.11). Private
 * to src/pixel: htj2k.c is its only caller.
 *
 * No C++ exception crosses these functions: each is caught in the shim and
 * turned into a px_htj2k_shim_result with a message.
 */
#ifndef PX_HTJ2K_SHIM_H
#define PX_HTJ2K_SHIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    PX_HTJ2K_SHIM_OK = 0,
    PX_HTJ2K_SHIM_MALFORMED,    /* OpenJPH rejected the codestream */
    PX_HTJ2K_SHIM_NOMEM,
    PX_HTJ2K_SHIM_UNSUPPORTED,  /* subsampled components, too many, too deep */
    PX_HTJ2K_SHIM_ABORTED,      /* a callback said stop */
} px_htj2k_shim_result;

#define PX_HTJ2K_SHIM_MESSAGE_MAX 160

/* What the codestream's SIZ and COD say. */
typedef struct px_htj2k_shim_header {
    uint32_t width;
    uint32_t height;
    uint32_t components;
    uint32_t bit_depth;         /* of component 0; all must match */
    bool is_signed;
    bool color_transform;       /* the multiple component transform was used */
    bool reversible;
} px_htj2k_shim_header;

/*
 * Called once the header is read: returns a buffer of width * height *
 * components int32 values, pixel-interleaved, for the shim to fill, or NULL
 * to stop (the call then gives PX_HTJ2K_SHIM_ABORTED).
 */
typedef int32_t *(*px_htj2k_shim_alloc_fn)(void *ctx, const px_htj2k_shim_header *hdr);

px_htj2k_shim_result px_htj2k_shim_decode(const uint8_t *bytes, size_t len,
                                          px_htj2k_shim_alloc_fn alloc, void *ctx,
                                          char msg[PX_HTJ2K_SHIM_MESSAGE_MAX]);

/* Receives the encoded codestream; returns false to report out of memory. */
typedef bool (*px_htj2k_shim_write_fn)(void *ctx, const uint8_t *data, size_t len);

/*
 * Encodes width x height x components pixel-interleaved samples (one int32
 * each, already in the sample's signed or unsigned range) as a reversible
 * (lossless) HTJ2K codestream, with the colour transform when there are 3
 * components.
 */
px_htj2k_shim_result px_htj2k_shim_encode(const int32_t *samples, uint32_t width,
                                          uint32_t height, uint32_t components,
                                          uint32_t bit_depth, bool is_signed,
                                          px_htj2k_shim_write_fn write, void *ctx,
                                          char msg[PX_HTJ2K_SHIM_MESSAGE_MAX]);

#ifdef __cplusplus
}
#endif

#endif
