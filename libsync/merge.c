/*
 * merge.c - RFC 7396 JSON Merge Patch on jansson values, and the public
 * sky_merge_patch_text() built on it.
 *
 * The RFC's pseudo-code (section 2) is
 *
 *   define MergePatch(Target, Patch):
 *     if Patch is an Object:
 *       if Target is not an Object:
 *         Target = {} # Ignore the contents and set it to an empty Object
 *       for each Name/Value pair in Patch:
 *         if Value is null:
 *           if Name exists in Target:
 *             remove the Name/Value pair from Target
 *         else:
 *           Target[Name] = MergePatch(Target[Name], Value)
 *       return Target
 *     else:
 *       return Patch
 *
 * and this file follows it with two refinements that change no result:
 * - When Target[Name] is missing or not an object and Value is an object,
 *   MergePatch(Target[Name], Value) is MergePatch({}, Value): a copy of Value
 *   without its null members, at every depth. copy_stripped() builds that
 *   copy in one pass instead of creating {} and merging into it.
 * - Everything the result takes from the patch is a fresh copy, so the
 *   result and the patch share no value (see merge.h for why callers rely
 *   on it). Target objects are reused and modified in place: the cost of a
 *   merge is that of the patch, never that of the target.
 *
 * Object keys are handled with their lengths (jansson 2.14 API), so a key
 * with an embedded NUL, which jansson can hold though its parser refuses it,
 * is neither truncated nor confused with another.
 */
#include "config.h"

#include <assert.h>
#include <stdlib.h>

#include "error.h"
#include "json.h"
#include "merge.h"
#include "util.h"

/* MergePatch({}, patch) for an object `patch`: a copy without nulls. */
static json_t *copy_stripped(json_t *patch)
{
	const char *key;
	size_t key_len;
	json_t *value;

	assert(json_is_object(patch));
	json_t *out = json_object();
	if (!out)
		return NULL;
	json_object_keylen_foreach(patch, key, key_len, value) {
		json_t *copy;
		if (json_is_null(value))
			continue;
		if (json_is_object(value))
			copy = copy_stripped(value);
		else
			copy = json_deep_copy(value);
		/* The key comes from a jansson object: it is valid UTF-8. */
		if (!copy ||
		    json_object_setn_new_nocheck(out, key, key_len, copy) < 0) {
			json_decref(out);
			return NULL;
		}
	}
	return out;
}

/* MergePatch(target, patch) for two objects, in place. 0 or -1 (no memory). */
static int merge_into(json_t *target, json_t *patch)
{
	const char *key;
	size_t key_len;
	json_t *value;

	assert(json_is_object(target) && json_is_object(patch));
	json_object_keylen_foreach(patch, key, key_len, value) {
		json_t *copy;
		if (json_is_null(value)) {
			/* Deleting a missing key is not an error for the RFC.
			 */
			(void)json_object_deln(target, key, key_len);
			continue;
		}
		if (json_is_object(value)) {
			json_t *old = json_object_getn(target, key, key_len);
			if (json_is_object(old)) {
				if (merge_into(old, value) < 0)
					return -1;
				continue;
			}
			copy = copy_stripped(value);
		} else {
			copy = json_deep_copy(value);
		}
		if (!copy || json_object_setn_new_nocheck(target, key, key_len,
							  copy) < 0)
			return -1;
	}
	return 0;
}

json_t *sky__merge_patch(json_t *target, json_t *patch)
{
	json_t *result;

	/* true, false and null are jansson singletons, so target and patch
	 * may be the same value when both are one of those. */
	assert(patch != NULL && (patch != target || !json_is_object(patch)));
	if (!json_is_object(patch)) {
		json_decref(target);
		result = json_deep_copy(patch);
	} else if (!json_is_object(target)) {
		json_decref(target);
		result = copy_stripped(patch);
	} else if (merge_into(target, patch) < 0) {
		json_decref(target);
		result = NULL;
	} else {
		result = target;
	}
	if (!result)
		sky__error_nomem();
	return result;
}

static json_t *parse_input(const char *what, const char *text, size_t len)
{
	json_error_t jerr;
	json_t *json = sky__json_loadb(
	    text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
	if (!json)
		sky__error_set(SKY_EINVAL, SKY_ERRSRC_JSON, 0,
			       "%s: %s (line %d, column %d)", what, jerr.text,
			       jerr.line, jerr.column);
	return json;
}

int sky_merge_patch_text(const char *target, size_t target_len,
			 const char *patch, size_t patch_len, char **out,
			 size_t *out_len)
{
	json_t *jtarget, *jpatch, *result;
	sky_buf buf = SKY_BUF_INIT;
	int rc = SKY_EINVAL;

	assert(target && patch && out);
	jtarget = parse_input("target", target, target_len);
	if (!jtarget)
		goto fail_target;
	jpatch = parse_input("patch", patch, patch_len);
	if (!jpatch) {
		json_decref(jtarget);
		goto fail_target;
	}
	/*
	 * The result is dumped into a sky_buf rather than by json_dumps() so
	 * that it comes from the same allocator as everything sky_free()
	 * releases, whatever allocator jansson was given.
	 */
	rc = -1;
	result = sky__merge_patch(jtarget, jpatch);
	if (!result)
		goto fail_merge;
	if (sky__json_dump_buf(&buf, result) < 0)
		goto fail_dump;
	char *text = sky__buf_detach(&buf, out_len);
	if (!text)
		goto fail_dump;
	*out = text;
	rc = 0;
fail_dump:
	sky__buf_free(&buf);
	json_decref(result);
fail_merge:
	json_decref(jpatch);
fail_target:
	return rc;
}
