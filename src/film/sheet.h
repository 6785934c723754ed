/*
 * sheet.h - electronic film: images laid out on film sheets the way a
 * film printer prints them (a grid of cells on 8x10 to 14x17 inch film, or
 * A4/A3 paper), each cell one image rendered with a window (PS3.3 C.11.2,
 * the file's own or a named preset) and carrying the usual corner
 * annotations, a header line with the institution and a footer line with
 * the scale. The same drawing goes to a PNG (one sheet, cairo image
 * surface) or to a multi-page PDF (cairo PDF surface).
 *
 * Sheets are drawn one cell at a time: the caller loads an image
 * (sheet_image_load), hands it to the writer and frees it, so that a long
 * series never sits in memory whole. Nothing here reads the index or the
 * store: the caller opens the source and fills the annotations (UTF-8; a
 * Chinese name prints in PDF_FONT_FAMILY).
 */
#ifndef CP_FILM_SHEET_H
#define CP_FILM_SHEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/status.h"
#include "dicom/io.h"

/* Sheets in one document at most: a release's film is a handful, not a series' worth. */
#define SHEET_PAGES_MAX 8

/* Rows and columns at most (the largest printed grid, 5x6, with room to spare). */
#define SHEET_GRID_MAX 8

/* Dots per inch accepted: 72 for a quick look up to 600 for a laser imager. */
#define SHEET_DPI_MIN 72
#define SHEET_DPI_MAX 600

/* The default resolutions: a screen, and print. */
#define SHEET_DPI_SCREEN 150
#define SHEET_DPI_PRINT 300

/* Pixels of one side of a sheet at most (17 in at 600 dpi), so a PNG stays bounded. */
#define SHEET_SIDE_MAX 10200

typedef enum {
    SHEET_PNG,
    SHEET_PDF,
} sheet_format;

/* A film or paper size in inches, portrait (width <= height). */
typedef struct sheet_size {
    const char *name;                   /* "14x17in", "A4" */
    double width_in;
    double height_in;
} sheet_size;

/*
 * The size named by text: "8x10in", "10x12in", "11x14in", "14x14in",
 * "14x17in" (the "in" may be left out), "A4" or "A3" (any case); false
 * for anything else.
 */
bool sheet_size_find(const char *text, sheet_size *out);

/* A grid "RxC" (rows x columns): 1x1, 2x2, 3x3, 3x4, 4x5 or 5x6; false otherwise. */
bool sheet_layout_parse(const char *text, unsigned *rows, unsigned *cols);

/*
 * The smallest grid of the list above with room for count images (5x6
 * beyond 30); on a portrait sheet the longer side of the grid runs down.
 */
void sheet_layout_auto(size_t count, bool landscape, unsigned *rows, unsigned *cols);

/* A window (PS3.3 C.11.2.1.2). */
typedef struct sheet_window {
    double center;
    double width;
} sheet_window;

/*
 * A named preset for a modality (case-insensitive): CT "lung" -600/1500,
 * "mediastinum" 40/400, "bone" 300/1500, "brain" 40/80, "abdomen" 40/350.
 * "default" and "" mean the file's own window (false with nothing set);
 * MR, CR, DX and others have no named presets. false for an unknown name.
 */
bool sheet_preset_find(const char *name, const char *modality, sheet_window *out,
                       bool *known);

/* What the caller asks of a document. */
typedef struct sheet_options {
    sheet_size size;
    bool landscape;
    unsigned dpi;                       /* 0: SHEET_DPI_SCREEN */
    unsigned rows;                      /* 0 and 0: 4x5 */
    unsigned cols;
    const char *institution;            /* the header line; NULL prints nothing */
    const char *title;                  /* the PDF's title; NULL: "Electronic film" */
} sheet_options;

/*
 * The sheet's size in pixels at the options' DPI (rounded), and a cell's,
 * the room an image is fitted into (cell less its margin). false when the
 * options are out of range (DPI, grid, side over SHEET_SIDE_MAX).
 */
bool sheet_pixels(const sheet_options *o, uint32_t *width, uint32_t *height);
bool sheet_cell_pixels(const sheet_options *o, uint32_t *width, uint32_t *height);

/* The texts of one cell's corners (UTF-8; NULL or "" prints nothing). */
typedef struct sheet_notes {
    const char *patient_name;
    const char *patient_id;
    const char *sex;
    const char *age;                    /* "045Y" or a birth date YYYYMMDD */
    const char *institution;
    const char *study_date;             /* YYYYMMDD */
    const char *study_time;             /* HHMMSS[.f] */
    const char *modality;
    int64_t series_number;              /* INT64_MIN: not printed */
    int64_t instance_number;
} sheet_notes;

/* One image ready for a cell: the rendered picture and what the file said. */
typedef struct sheet_image {
    uint32_t width;                     /* the picture, fitted to the cell */
    uint32_t height;
    uint16_t channels;                  /* 1 grey, 3 RGB */
    uint8_t *data;                      /* owned: sheet_image_clear */
    uint32_t source_columns;            /* the frame's own size, for the zoom */
    uint32_t source_rows;
    bool has_window;                    /* the window applied, when there was one */
    sheet_window window;
    double slice_thickness;             /* mm; 0 when absent */
    bool has_location;
    double slice_location;              /* mm */
    double pixel_spacing;               /* mm a pixel (the row spacing); 0 when absent */
} sheet_image;

void sheet_image_clear(sheet_image *img);

/*
 * Reads the Part 10 file from src, decodes its first frame and renders it
 * fitted within width x height, aspect kept: with *window when it is not
 * NULL, else with the file's own window (its VOI LUT, else the frame's
 * min/max). CP_ERR_UNSUPPORTED when the file has no pixel data or no
 * decoder for its transfer syntax; CP_ERR_MALFORMED when it does not read.
 */
cp_status sheet_image_load(dcm_source *src, const sheet_window *window, uint32_t width,
                           uint32_t height, sheet_image *out, cp_error *err);

/* Lays out one document; see sheet_writer_create. */
typedef struct sheet_writer sheet_writer;

/*
 * A writer appending to out: for SHEET_PDF every sheet as a page; for
 * SHEET_PNG only the sheet numbered page (1-based), the others are passed
 * over (sheet_writer_wants says whether loading the next image is worth
 * it). CP_ERR_INVALID for options out of range.
 */
cp_status sheet_writer_create(const sheet_options *o, sheet_format format, unsigned page,
                              cp_buf *out, sheet_writer **w, cp_error *err);

/* Whether the next cell will be drawn (false for a PNG's other sheets or past the cap). */
bool sheet_writer_wants(const sheet_writer *w);

/*
 * Draws img (NULL: an empty black cell) with its notes in the next cell,
 * starting a new sheet when the current one is full. CP_ERR_LIMIT past
 * SHEET_PAGES_MAX sheets.
 */
cp_status sheet_writer_add(sheet_writer *w, const sheet_image *img, const sheet_notes *notes,
                           cp_error *err);

/* The next image starts a new sheet (a new series); nothing when the sheet is still empty. */
void sheet_writer_break(sheet_writer *w);

/*
 * Ends the document: the last sheet is closed and the PDF or the PNG
 * appended to out. CP_ERR_NOT_FOUND for a PNG page that was never drawn.
 * Nothing is appended on failure. *pages (may be NULL) gets the sheets.
 */
cp_status sheet_writer_finish(sheet_writer *w, unsigned *pages, cp_error *err);

/* Frees the writer (finished or not; an unfinished one leaves out as it was). */
void sheet_writer_destroy(sheet_writer *w);

/*
 * Which images of a series of count make its sheet of cells: all when
 * count <= cells, else cells of them evenly spaced from the first to the
 * last. Writes the indexes to picks (room for cells) and returns how many.
 */
size_t sheet_pick(size_t count, size_t cells, size_t *picks);

#endif
