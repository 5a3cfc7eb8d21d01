#!/usr/bin/env python3
"""make-corpus.py - write the JSON parser corpus of tests/data/json/.

invalid/ holds malformed JSON, one input per file, named CLASS_what.json:
every one must be refused by the event parser with a clear error and
change nothing (tests/test_cli.sh feeds each to `skysync apply`). valid/
holds the nearest valid neighbours of the same classes, which must be
accepted. The files are committed beside this script so that the corpus
can be reviewed as it is; run it again after changing it
(`python3 tests/data/json/make-corpus.py`) and commit both.

What the corpus keeps true:
- each input is one line with no trailing newline (NDJSON carries one JSON
  text per line), except control_0a, whose raw newline is the point;
- no raw NUL byte, no \\u0000, no integer beyond 64 bits and no byte order
  mark: tests/data/values/ and tests/test_json.c test those on their own;
- invalid inputs stay invalid when embedded as a value in a larger text
  (the test also applies each one inside a data event), so no empty or
  whitespace-only input;
- the depth cases sit around the cache's default nesting limit of 64
  levels (SKY_DEFAULT_MAX_DEPTH), counted over the whole event text.
"""
import os
import sys

DEPTH_LIMIT = 64

invalid = {}
valid = {}


def bad(name, data):
    assert name not in invalid, name
    invalid[name] = data.encode("utf-8") if isinstance(data, str) else data


def good(name, data):
    assert name not in valid, name
    valid[name] = data.encode("utf-8") if isinstance(data, str) else data


# --- token: words, quotes, comments and punctuation JSON does not have ---
for name, text in [
    ("true_misspelt", "[tru]"), ("true_swapped", "[treu]"),
    ("true_capital", "[True]"), ("true_extra", "[truex]"),
    ("false_misspelt", "[fals]"), ("false_capital", "[FALSE]"),
    ("null_misspelt", "[nul]"), ("null_capital", "[NULL]"),
    ("nil", "[nil]"), ("undefined", "[undefined]"),
    ("nan", "[NaN]"), ("nan_negative", "[-NaN]"),
    ("infinity", "[Infinity]"), ("infinity_negative", "[-Infinity]"),
    ("inf", "[inf]"),
    ("single_quoted_string", "['a']"), ("single_quoted_key", "{'a':1}"),
    ("backtick_string", "[`a`]"),
    ("comment_block", "[1,/* c */2]"), ("comment_line", "[1]// c"),
    ("comment_block_before", "/* c */[1]"), ("comment_hash", "[1]# c"),
    ("unquoted_key", "{a:1}"), ("unquoted_key_two_words", "{a b:1}"),
    ("number_key", "{1:1}"), ("true_key", "{true:1}"),
    ("null_key", "{null:1}"), ("array_key", "{[1]:2}"),
    ("object_key", "{{}:2}"),
    ("missing_colon", "{\"a\" 1}"), ("missing_colon_and_value", "{\"a\"}"),
    ("double_colon", "{\"a\"::1}"), ("equals_for_colon", "{\"a\"=1}"),
    ("semicolon_for_colon", "{\"a\";1}"),
    ("missing_comma_numbers", "[1 2]"), ("missing_comma_strings", "[\"a\" \"b\"]"),
    ("missing_comma_arrays", "[[] []]"),
    ("missing_comma_members", "{\"a\":1 \"b\":2}"),
    ("semicolon_for_comma", "[1;2]"),
    ("extra_comma_array_end", "[1,]"), ("extra_comma_array_start", "[,1]"),
    ("extra_comma_array_double", "[1,,2]"), ("comma_only_array", "[,]"),
    ("extra_comma_object_end", "{\"a\":1,}"),
    ("extra_comma_object_start", "{,\"a\":1}"),
    ("extra_comma_object_double", "{\"a\":1,,\"b\":2}"),
    ("comma_only_object", "{,}"),
    ("missing_value", "{\"a\":}"), ("missing_value_before_comma", "{\"a\":,\"b\":1}"),
    ("colon_in_array", "[1:2]"), ("bare_word", "abc"), ("bare_comma", ","),
    ("bare_colon", ":"), ("star", "[*]"),
    ("close_array_with_brace", "[1}"), ("close_object_with_bracket", "{\"a\":1]"),
    ("lone_close_bracket", "]"), ("lone_close_brace", "}"),
    ("crossed_nesting", "{\"a\":[1}]"),
    ("raw_utf8_outside_string", "[\u00e9]"),
]:
    bad("token_" + name, text)

for name, text in [
    ("literals", "[true,false,null]"), ("quoted_key", "{\"a\":1}"),
    ("quotes_inside_string", "[\"'a' `b`\"]"),
    ("comment_inside_string", "[\"/* c */ // d # e\"]"),
    ("nan_infinity_strings", "[\"NaN\",\"Infinity\",\"undefined\"]"),
    ("whitespace_everywhere", " [ 1 ,\t2 , { \"a\" : [ ] } ] "),
    ("empty_containers", "[[],{},[{}],{\"a\":[]}]"),
    ("keys_that_look_like_values", "{\"true\":1,\"null\":2,\"1\":3,\"[1]\":4}"),
]:
    good("token_" + name, text)

# --- trunc: valid texts cut short ---
for name, text in [
    ("inside_string", "[\"abc"), ("inside_top_string", "\"abc"),
    ("inside_value_string", "{\"a\":\"b"), ("inside_key", "{\"ab"),
    ("after_backslash", "[\"a\\"), ("inside_u_escape", "[\"\\u00"),
    ("inside_number", "[12"), ("after_minus", "[-"), ("after_dot", "[1."),
    ("after_exponent", "[1e"), ("after_exponent_sign", "[1e+"),
    ("number_in_object", "{\"a\":1"),
    ("after_key", "{\"a\""), ("after_second_key", "{\"a\":1,\"b\""),
    ("after_colon", "{\"a\":"), ("after_colon_space", "{\"a\": "),
    ("after_comma_array", "[1,"), ("mid_array", "[1,2"),
    ("open_array", "["), ("open_arrays", "[["), ("inner_closed", "[[1]"),
    ("open_object", "{"), ("after_comma_object", "{\"a\":1,"),
    ("inner_object_closed", "{\"a\":{}"), ("array_in_object", "{\"a\":["),
    ("object_in_array", "[{"), ("inside_true", "[tr"),
    ("inside_null", "[nul"), ("inside_false", "[fa"), ("top_literal", "t"),
]:
    bad("trunc_" + name, text)

for name, text in [
    ("string_closed", "[\"abc\"]"), ("object_closed", "{\"a\":\"b\"}"),
    ("number_closed", "[12,-1,1.5,1e+2]"), ("array_closed", "[1,[2,[3]]]"),
    ("object_nested_closed", "{\"a\":{\"b\":[{}]}}"),
]:
    good("trunc_" + name, text)

# --- escape: backslash sequences JSON does not have ---
for name, text in [
    ("x", "[\"\\x41\"]"), ("u_two_digits", "[\"\\u12\"]"),
    ("u_no_digits", "[\"\\u\"]"), ("u_three_digits", "[\"\\u123\"]"),
    ("u_bad_digit", "[\"\\u12G4\"]"), ("u_zzzz", "[\"\\uZZZZ\"]"),
    ("u_negative", "[\"\\u-123\"]"), ("u_space", "[\"\\u 123\"]"),
    ("capital_u", "[\"\\U0041\"]"), ("capital_u_eight", "[\"\\U00000041\"]"),
    ("a", "[\"\\a\"]"), ("zero", "[\"\\0\"]"), ("v", "[\"\\v\"]"),
    ("e", "[\"\\e\"]"), ("single_quote", "[\"\\'\"]"),
    ("space", "[\"\\ \"]"), ("capital_n", "[\"\\N\"]"),
    ("raw_utf8", "[\"\\\u00e9\"]"), ("in_key", "{\"\\x\":1}"),
    ("backslash_control", b"[\"\\\x01\"]"),
    ("backslash_tab", "[\"\\\t\"]"),
]:
    bad("escape_" + name, text)

for name, text in [
    ("all_short", "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"]"),
    ("u_lower_and_upper", "[\"\\u00e9\\u00E9\\uabcd\\uABCD\"]"),
    ("u_instead_of_x", "[\"\\u0041\\u0078\"]"),
    ("u_controls", "[\"\\u0001\\u001f\\u007f\"]"),
    ("in_key", "{\"\\u0061\\n\":1}"),
]:
    good("escape_" + name, text)


# --- utf8: byte sequences that are not UTF-8, inside a string ---
def s(raw):
    return b"[\"" + raw + b"\"]"


for name, raw in [
    ("overlong_2_slash", b"\xc0\xaf"), ("overlong_2_max", b"\xc1\xbf"),
    ("overlong_3_slash", b"\xe0\x80\xaf"), ("overlong_3_max", b"\xe0\x9f\xbf"),
    ("overlong_4_slash", b"\xf0\x80\x80\xaf"),
    ("overlong_4_max", b"\xf0\x8f\xbf\xbf"),
    ("lone_continuation_80", b"\x80"), ("lone_continuation_bf", b"\xbf"),
    ("two_continuations", b"\x80\x80"), ("continuation_after_ascii", b"a\x9f"),
    ("truncated_2", b"\xc3"), ("truncated_3_of_2", b"\xe2\x82"),
    ("truncated_3_of_1", b"\xe2"), ("truncated_4_of_3", b"\xf0\x9f\x98"),
    ("ascii_for_continuation", b"\xc3A"), ("byte_fe", b"\xfe"),
    ("byte_ff", b"\xff"), ("bytes_fe_ff", b"\xfe\xff"),
    ("surrogate_d800", b"\xed\xa0\x80"), ("surrogate_dfff", b"\xed\xbf\xbf"),
    ("surrogate_pair_cesu", b"\xed\xa0\xbd\xed\xb8\x80"),
    ("above_10ffff", b"\xf4\x90\x80\x80"), ("lead_f5", b"\xf5\x80\x80\x80"),
    ("lead_f7", b"\xf7\xbf\xbf\xbf"), ("five_bytes", b"\xf8\x88\x80\x80\x80"),
    ("six_bytes", b"\xfc\x84\x80\x80\x80\x80"),
]:
    bad("utf8_" + name, s(raw))
bad("utf8_overlong_in_key", b"{\"\xc0\xaf\":1}")
bad("utf8_byte_ff_outside_string", b"[1,\xff]")

for name, raw in [
    ("two_three_four_bytes", "\u00e9\u20ac\U0001F600".encode()),
    ("smallest_of_each_length", b"\xc2\x80\xe0\xa0\x80\xf0\x90\x80\x80"),
    ("largest_code_point", b"\xf4\x8f\xbf\xbf"),
    ("around_surrogates", b"\xed\x9f\xbf\xee\x80\x80"),
    ("noncharacters", b"\xef\xbf\xbe\xef\xbf\xbf"),
    ("replacement_char", b"\xef\xbf\xbd"),
    ("del", b"\x7f"),
]:
    good("utf8_" + name, s(raw))
good("utf8_key", "{\"\u043a\u043b\u044e\u0447\":\"\u65e5\u672c\"}")

# --- surrogate: \u escapes of unpaired UTF-16 surrogates ---
for name, text in [
    ("high_alone", "[\"\\uD800\"]"), ("low_alone", "[\"\\uDC00\"]"),
    ("highest_high_alone", "[\"\\uDBFF\"]"), ("highest_low_alone", "[\"\\uDFFF\"]"),
    ("high_lowercase_alone", "[\"\\ud83d\"]"),
    ("high_then_ascii_escape", "[\"\\uD800\\u0041\"]"),
    ("high_then_char", "[\"\\uD800x\"]"), ("high_then_high", "[\"\\uD800\\uD800\"]"),
    ("high_then_high_emoji", "[\"\\uD83D\\uD83D\"]"),
    ("low_then_high", "[\"\\uDE00\\uD83D\"]"),
    ("high_then_newline_escape", "[\"\\uD800\\n\"]"),
    ("high_then_short_escape", "[\"\\uD800\\u12\"]"),
    ("high_then_bmp", "[\"\\uD800\\uE000\"]"),
    ("high_in_key", "{\"\\uD800\":1}"), ("low_in_key", "{\"\\uDC00\":1}"),
    ("high_then_raw_low_utf8", b"[\"\\uD800\xed\xb0\x80\"]"),
]:
    bad("surrogate_" + name, text)

for name, text in [
    ("pair_emoji", "[\"\\uD83D\\uDE00\"]"), ("pair_lowest", "[\"\\uD800\\uDC00\"]"),
    ("pair_highest", "[\"\\uDBFF\\uDFFF\"]"), ("pair_lowercase", "[\"\\ud834\\udd1e\"]"),
    ("pair_in_key", "{\"\\uD83D\\uDE00\":\"\\uD83C\\uDF89\"}"),
    ("pair_after_bmp", "[\"\\uE000\\uD83D\\uDE00\\uFFFF\"]"),
]:
    good("surrogate_" + name, text)

# --- control: raw bytes 0x01-0x1F inside strings (0x00 is left out) ---
for c in range(0x01, 0x20):
    bad("control_%02x" % c, b"[\"a" + bytes([c]) + b"b\"]")
bad("control_01_in_key", b"{\"a\x01\":1}")
bad("control_1f_alone", b"[\"\x1f\"]")
bad("control_01_outside_string", b"[1,\x012]")
good("control_escaped", "[\"a\\u0001b\\u001fc\\td\\ne\"]")
good("control_tab_between_tokens", "[1,\t2]")

# --- trailing: garbage after a complete value ---
for name, text in [
    ("word", "[1] x"), ("bracket", "[1]]"), ("brace", "{}}"),
    ("string_after_object", "{\"a\":1}\"b\""), ("second_array", "[1] [2]"),
    ("comma_between_values", "[1],[2]"), ("second_number", "1 2"),
    ("zero_zero", "0 0"), ("second_string", "\"a\" \"b\""), ("after_empty", "[]x"),
    ("second_literal", "true false"), ("comma", "null,"), ("comma_after_space", "{} ,"),
    ("colon", "[1]:"), ("letter_after_literal", "truee"),
    ("letter_after_null", "nulll"), ("brace_after_number", "1 }"),
    ("comment", "{\"a\":1} // c"), ("byte_ff", b"[1]\xff"),
    ("control", b"[1]\x01"),
]:
    bad("trailing_" + name, text)

for name, text in [
    ("space", "[1] "), ("tab", "[1]\t"), ("leading_space", " [1]"),
    ("number_alone", "1"), ("string_alone", "\"a\""), ("true_alone", "true"),
    ("null_alone", "null"),
]:
    good("trailing_" + name, text)

# --- depth: nesting over the limit (the scan counts brackets outside
# strings, balanced or not) ---


def arrays(n, close=True):
    return "[" * n + ("]" * n if close else "")


def objects(n):
    return "{\"a\":" * (n - 1) + "{}" + "}" * (n - 1)


def mixed(n):
    opens = "".join("[" if i % 2 == 0 else "{\"a\":" for i in range(n - 1))
    inner = "[]" if (n - 1) % 2 == 0 else "{}"
    closes = "".join("]" if i % 2 == 0 else "}" for i in reversed(range(n - 1)))
    return opens + inner + closes


L = DEPTH_LIMIT
bad("depth_arrays_%d" % (L + 1), arrays(L + 1))
bad("depth_arrays_%d" % (L + 36), arrays(L + 36))
bad("depth_arrays_1000", arrays(1000))
bad("depth_arrays_3000", arrays(3000))
bad("depth_arrays_100000_unclosed", arrays(100000, close=False))
bad("depth_objects_%d" % (L + 1), objects(L + 1))
bad("depth_objects_1000", objects(1000))
bad("depth_mixed_%d" % (L + 1), mixed(L + 1))
bad("depth_unbalanced_%d" % (L + 1), "[" * (L + 1) + "]")
good("depth_arrays_%d" % L, arrays(L))
good("depth_objects_%d" % L, objects(L))
good("depth_mixed_%d" % L, mixed(L))
good("depth_brackets_inside_string", "[\"" + "[{" * 200 + "\"]")

# --- number: outside the JSON number grammar ---
for name, text in [
    ("leading_zero", "[01]"), ("leading_zero_negative", "[-01]"),
    ("double_zero", "[00]"), ("leading_zero_fraction", "[012.5]"),
    ("dot_end", "[1.]"), ("dot_end_two", "[2.]"), ("dot_start", "[.5]"),
    ("dot_start_negative", "[-.5]"), ("dot_alone", "[.]"),
    ("plus", "[+1]"), ("exponent_empty", "[1e]"), ("exponent_plus_empty", "[1e+]"),
    ("exponent_minus_empty", "[1E-]"), ("minus_alone", "[-]"),
    ("minus_space", "[- 1]"), ("minus_minus", "[--1]"), ("minus_e", "[-e5]"),
    ("hex", "[0x10]"), ("binary", "[0b1]"), ("octal", "[0o7]"),
    ("dot_before_exponent", "[1.e5]"), ("zero_dot_exponent", "[0.e1]"),
    ("fraction_exponent_empty", "[1.5e]"), ("two_dots", "[1..2]"),
    ("three_parts", "[1.2.3]"), ("fraction_exponent", "[1e5.5]"),
    ("double_exponent", "[1ee5]"), ("two_exponents", "[1e1e1]"),
    ("underscore", "[1_000]"), ("suffix_f", "[1.5f]"), ("suffix_l", "[1L]"),
    ("top_leading_zero", "01"), ("top_minus", "-"), ("top_dot_end", "1."),
    ("comma_decimal", "[1,5.]"), ("fullwidth_digit", "[\uff11]"),
]:
    bad("number_" + name, text)

for name, text in [
    ("zero", "[0]"), ("minus_zero", "[-0,-0.0]"), ("fraction", "[1.0,0.5,0.1]"),
    ("exponents", "[1e5,1E+5,1e-5,1.0e5,0e0,-1.5e-7]"),
    ("int64_limits", "[9223372036854775807,-9223372036854775808]"),
    ("above_2_53", "[9007199254740993]"), ("large_float", "[1.5e300,-2.5e-300]"),
    ("ten", "[10,-10,100]"),
]:
    good("number_" + name, text)


def write(folder, files):
    os.makedirs(folder, exist_ok=True)
    for old in os.listdir(folder):
        if old.endswith(".json") and old[:-5] not in files:
            os.remove(os.path.join(folder, old))
    for name, data in sorted(files.items()):
        assert b"\x00" not in data, name
        assert name == "control_0a" or b"\n" not in data, name
        with open(os.path.join(folder, name + ".json"), "wb") as f:
            f.write(data)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    write(os.path.join(here, "invalid"), invalid)
    write(os.path.join(here, "valid"), valid)
    for title, files in (("invalid", invalid), ("valid", valid)):
        counts = {}
        for name in files:
            cls = name.split("_", 1)[0]
            counts[cls] = counts.get(cls, 0) + 1
        print("%s: %d (%s)" % (title, len(files), ", ".join(
            "%s %d" % kv for kv in sorted(counts.items()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
