/*
 * merge.h - RFC 7396 JSON Merge Patch on jansson values.
 *
 * This is the in-memory form of the merge, used where a whole document is at
 * hand (the emulator, the outbox's local view, sky_merge_patch_text). The
 * stored form, which applies a patch without reading the document it lands
 * on, is in doc.h; both give the same results, and the tests hold them to it.
 */
#ifndef SKY_MERGE_H
#define SKY_MERGE_H

#include <jansson.h>

/*
 * Apply the merge patch `patch` to `target` exactly as RFC 7396 section 2
 * (and its Appendix A) says: a patch that is not an object is the result;
 * a target that is not an object is taken as {}; a null member deletes the
 * key; object members merge recursively; arrays and scalars replace the
 * old value whole.
 *
 * Ownership:
 * - `target` is consumed: the function takes over the caller's reference
 *   (NULL stands for a missing target) and may modify the object in place,
 *   so anyone else holding a reference to it, or to one of its nested
 *   objects, sees the change. Pass json_deep_copy(target) to keep it.
 * - `patch` is borrowed and never modified; it must not be `target` nor
 *   share objects with it. Whatever the result takes from it is copied, so
 *   the result never shares a value with the patch and can itself be
 *   modified later without touching the patch.
 * - The return value is a new reference, the caller's to json_decref(). It
 *   is NULL only when memory ran out; the reference to `target` is then
 *   released all the same (the object may have been partly patched).
 *
 * Cost: proportional to the patch. Nothing of the target is copied.
 */
json_t *sky__merge_patch(json_t *target, json_t *patch);

#endif
