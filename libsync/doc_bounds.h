/*
 * doc_bounds.h - when a session data document is stored whole, as one
 * value, rather than member by member (doc.c: "Two forms"): the two
 * bounds, size and depth, and the values in use, apart so that doc.h can
 * offer them to tests and the check (doc_check.c) can hold stored texts to
 * the depth without including doc.h.
 *
 * Stored data does not depend on the values in use: both forms read
 * alike, and a document takes the form they call for at its next write.
 */
#ifndef SKY_DOC_BOUNDS_H
#define SKY_DOC_BOUNDS_H

#include <stddef.h>

/*
 * Documents whose compact text is at most this many bytes are stored whole,
 * as one value; larger ones member by member (doc.c: "Two forms"). A 10 KB
 * document is read with one lookup.
 */
#define SKY__DOC_WHOLE_MAX 16384

/*
 * Documents nested deeper than this (objects and arrays, the outermost
 * object being level 1) are stored member by member whatever their size,
 * so that a stored text always parses (jansson refuses text nested deeper
 * than JSON_PARSER_MAX_DEPTH, 2048) and writing or merging it recurses
 * this deep at most. Twice the default depth limit of session data
 * (SKY_DEFAULT_MAX_DEPTH, 64): what a cache takes in under that default
 * can always be stored whole.
 */
#define SKY__DOC_WHOLE_DEPTH_MAX 128

/*
 * The bounds in use (SKY__DOC_WHOLE_MAX, SKY__DOC_WHOLE_DEPTH_MAX). Tests
 * change them to force either form; both read alike, so stored data does
 * not depend on them. The depth may be lowered, never raised: the check
 * holds whole documents to SKY__DOC_WHOLE_DEPTH_MAX.
 */
extern size_t sky__doc_whole_max;
extern size_t sky__doc_whole_depth_max;

#endif
