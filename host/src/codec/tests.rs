//! The codecs' unit tests: decoding, encoding and their round trips.
use super::csv::*;
use super::encode::*;
use super::json::*;
use super::scan::*;
use super::*;
use arrow::array::AsArray;
use arrow::array::{BooleanArray, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{Float64Type, Int64Type};
use serde_json::{Value, json};

fn lines(text: &str) -> Vec<(u64, &str)> {
    text.split('\n')
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l))
        .collect()
}

fn decode(text: &str) -> (RecordBatch, Vec<u64>, Vec<BadLine>) {
    decode_json_lines(lines(text))
}

fn encode(batch: &RecordBatch) -> String {
    let mut out = Vec::new();
    encode_json_lines(batch, &mut out);
    String::from_utf8(out).unwrap()
}

fn values(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn kinds(batch: &RecordBatch) -> Vec<(String, &'static str)> {
    batch
        .schema()
        .fields()
        .iter()
        .map(|f| {
            let kind = match f.data_type() {
                _ if is_json_field(f) => "json",
                DataType::Int64 => "int",
                DataType::Float64 => "float",
                DataType::Boolean => "bool",
                DataType::Utf8 => "utf8",
                other => panic!("unexpected type {other}"),
            };
            (f.name().clone(), kind)
        })
        .collect()
}

fn names_kinds(list: &[(&str, &'static str)]) -> Vec<(String, &'static str)> {
    list.iter().map(|(n, k)| (n.to_string(), *k)).collect()
}

fn strs(batch: &RecordBatch, col: &str) -> Vec<Option<String>> {
    batch
        .column_by_name(col)
        .unwrap()
        .as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_owned))
        .collect()
}

#[test]
fn json_field_helpers() {
    let f = json_field("doc");
    assert!(is_json_field(&f));
    assert!(f.is_nullable());
    assert_eq!(f.metadata()["ARROW:extension:name"], "arrow.json");
    assert!(!is_json_field(&Field::new("doc", DataType::Utf8, true)));
    let int_tagged = Field::new("doc", DataType::Int64, true).with_metadata(f.metadata().clone());
    assert!(!is_json_field(&int_tagged));
}

#[test]
fn infers_each_type() {
    let (batch, rows, bad) = decode(concat!(
        r#"{"i":1,"f":1.5,"b":true,"s":"x","n":{"k":[1,2]},"a":[1, "two"]}"#,
        "\n",
        r#"{"i":-2,"f":2.0e3,"b":false,"s":"y","n":null,"a":[]}"#,
    ));
    assert!(bad.is_empty());
    assert_eq!(rows, vec![1, 2]);
    assert_eq!(
        kinds(&batch),
        names_kinds(&[
            ("i", "int"),
            ("f", "float"),
            ("b", "bool"),
            ("s", "utf8"),
            ("n", "json"),
            ("a", "json")
        ])
    );
    let i = batch.column(0).as_primitive::<Int64Type>();
    assert_eq!(i.values().as_ref(), &[1, -2]);
    let f = batch.column(1).as_primitive::<Float64Type>();
    assert_eq!(f.values().as_ref(), &[1.5, 2000.0]);
    assert_eq!(strs(&batch, "n"), vec![Some(r#"{"k":[1,2]}"#.into()), None]);
    assert_eq!(
        strs(&batch, "a"),
        vec![Some(r#"[1, "two"]"#.into()), Some("[]".into())]
    );
}

#[test]
fn mixed_types_become_json() {
    let (batch, _, bad) = decode(concat!(
        r#"{"m":1,"x":1,"y":1,"z":true}"#,
        "\n",
        r#"{"m":"one","x":2.5,"y":9007199254740993,"z":"t"}"#,
        "\n",
        r#"{"m":true,"x":3,"y":0.5,"z":null}"#,
    ));
    assert!(bad.is_empty());
    assert_eq!(
        kinds(&batch),
        names_kinds(&[("m", "json"), ("x", "json"), ("y", "json"), ("z", "json")])
    );
    assert_eq!(
        strs(&batch, "m"),
        vec![
            Some("1".into()),
            Some(r#""one""#.into()),
            Some("true".into())
        ]
    );
    // Integers mixed with floats keep their text, so `1` stays an integer.
    assert_eq!(
        strs(&batch, "x"),
        vec![Some("1".into()), Some("2.5".into()), Some("3".into())]
    );
    assert_eq!(
        strs(&batch, "y"),
        vec![
            Some("1".into()),
            Some("9007199254740993".into()),
            Some("0.5".into())
        ]
    );
    assert_eq!(
        strs(&batch, "z"),
        vec![Some("true".into()), Some(r#""t""#.into()), None]
    );
    let (batch, _, _) = decode("{\"v\":1.5e3}\n{\"v\":0.5}");
    assert_eq!(kinds(&batch), names_kinds(&[("v", "float")]));
}

#[test]
fn nulls_absent_fields_and_key_order() {
    let (batch, rows, bad) = decode(concat!(
        r#"{"b":1,"a":"x"}"#,
        "\n",
        r#"{"c":true,"a":null}"#,
        "\n",
        r#"{"a":"z","d":null}"#,
        "\n",
        r#"{}"#,
    ));
    assert!(bad.is_empty());
    assert_eq!(rows, vec![1, 2, 3, 4]);
    assert_eq!(
        kinds(&batch),
        names_kinds(&[("b", "int"), ("a", "utf8"), ("c", "bool"), ("d", "json")])
    );
    let b = batch.column(0).as_primitive::<Int64Type>();
    assert_eq!(
        b.iter().collect::<Vec<_>>(),
        vec![Some(1), None, None, None]
    );
    assert_eq!(
        strs(&batch, "a"),
        vec![Some("x".into()), None, Some("z".into()), None]
    );
    assert_eq!(batch.column(3).null_count(), 4);
    assert_eq!(
        encode(&batch),
        concat!(
            r#"{"b":1,"a":"x"}"#,
            "\n",
            r#"{"c":true}"#,
            "\n",
            r#"{"a":"z"}"#,
            "\n",
            r#"{}"#,
            "\n",
        )
    );
}

#[test]
fn empty_objects_only_give_rows_without_columns() {
    let (batch, rows, bad) = decode("{}\n { } ");
    assert!(bad.is_empty());
    assert_eq!((batch.num_rows(), batch.num_columns()), (2, 0));
    assert_eq!(rows, vec![1, 2]);
    assert_eq!(encode(&batch), "{}\n{}\n");
}

#[test]
fn duplicate_keys_last_wins() {
    let (batch, _, _) = decode(concat!(
        r#"{"a":1,"a":"x","b":2,"b":null}"#,
        "\n",
        r#"{"\u0061":"y","b":3}"#,
    ));
    assert_eq!(kinds(&batch), names_kinds(&[("a", "utf8"), ("b", "int")]));
    assert_eq!(strs(&batch, "a"), vec![Some("x".into()), Some("y".into())]);
    let b = batch.column(1).as_primitive::<Int64Type>();
    assert_eq!(b.iter().collect::<Vec<_>>(), vec![None, Some(3)]);
}

#[test]
fn unicode_and_escapes_round_trip() {
    let input = concat!(
        r#"{"plain":"héllo wörld ✓ 😀","esc":"q\"b\\s\/n\nt\tc\u0001r\r\b\f","uni":"\u00e9\ud83d\ude00","k\"ey":1,"ünï":"\u2028"}"#,
        "\n",
        r#"{"plain":"","esc":"\u0000\u001f\u007f","uni":"日本語","k\"ey":2,"ünï":"x"}"#,
    );
    let (batch, _, bad) = decode(input);
    assert!(bad.is_empty());
    assert_eq!(
        strs(&batch, "esc")[0].as_deref(),
        Some("q\"b\\s/n\nt\tc\u{1}r\r\u{8}\u{c}")
    );
    assert_eq!(strs(&batch, "uni")[0].as_deref(), Some("é😀"));
    let out = encode(&batch);
    assert_eq!(out.lines().count(), 2);
    assert_eq!(values(&out), values(input));
    // Strings are escaped as serde_json escapes them; key order is kept.
    assert_eq!(
        out.lines().next().unwrap(),
        r#"{"plain":"héllo wörld ✓ 😀","esc":"q\"b\\s/n\nt\tc\u0001r\r\b\f","uni":"é😀","k\"ey":1,"ünï":"\u{2028}"}"#
            .replace("\\u{2028}", "\u{2028}")
    );
}

#[test]
fn byte_order_mark_and_lone_surrogates() {
    let (batch, rows, bad) = decode("\u{feff}{\"s\":\"\\ud800\"}\r\n{\"s\":\"ok\"}");
    assert!(bad.is_empty());
    assert_eq!(rows, vec![1, 2]);
    // A lone surrogate cannot be a Rust string: the value stays JSON text.
    assert_eq!(kinds(&batch), names_kinds(&[("s", "json")]));
    assert_eq!(
        strs(&batch, "s"),
        vec![Some(r#""\ud800""#.into()), Some(r#""ok""#.into())]
    );
    assert_eq!(encode(&batch), "{\"s\":\"\\ud800\"}\n{\"s\":\"ok\"}\n");
}

#[test]
fn string_escaping_matches_serde_json() {
    let mut samples: Vec<String> = (0u32..0x80)
        .map(|c| char::from_u32(c).unwrap().to_string())
        .collect();
    samples.push(String::new());
    samples.push("a long string of more than eight bytes \"quoted\" \\ \u{1f} é 😀".into());
    samples.push("12345678\n12345678\"1234567\\".into());
    samples.push("x".repeat(63) + "\u{7}");
    for s in samples {
        let mut out = Vec::new();
        write_json_str(&mut out, &s);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            serde_json::to_string(&s).unwrap()
        );
    }
}

#[test]
fn big_numbers() {
    let (batch, _, bad) = decode(concat!(
        r#"{"max":9223372036854775807,"min":-9223372036854775808,"big":9223372036854775808,"huge":1e400,"neg0":-0}"#,
        "\n",
        r#"{"max":1,"min":2,"big":-123456789012345678901234567890,"huge":2,"neg0":5}"#,
    ));
    assert!(bad.is_empty());
    assert_eq!(
        kinds(&batch),
        names_kinds(&[
            ("max", "int"),
            ("min", "int"),
            ("big", "json"),
            ("huge", "json"),
            ("neg0", "int")
        ])
    );
    assert_eq!(
        batch.column(0).as_primitive::<Int64Type>().value(0),
        i64::MAX
    );
    assert_eq!(
        batch.column(1).as_primitive::<Int64Type>().value(0),
        i64::MIN
    );
    assert_eq!(
        strs(&batch, "big"),
        vec![
            Some("9223372036854775808".into()),
            Some("-123456789012345678901234567890".into())
        ]
    );
    let out = encode(&batch);
    assert!(out.starts_with(r#"{"max":9223372036854775807,"min":-9223372036854775808,"big":9223372036854775808,"huge":1e400,"neg0":0}"#));
}

#[test]
fn bad_lines_blank_lines_and_line_numbers() {
    let input =
        "\n{\"a\":1}\n   \n{\"a\":\n[1,2]\n42\n\"s\"\n{\"a\":2} x\nnot json\n\t\n{\"a\":3}\r\n";
    let (batch, rows, bad) = decode(input);
    assert_eq!(rows, vec![2, 11]);
    assert_eq!(
        batch
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .as_ref(),
        &[1, 3]
    );
    let got: Vec<(u64, &str, &str)> = bad
        .iter()
        .map(|b| (b.line, b.raw.as_str(), b.reason.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                4,
                "{\"a\":",
                "invalid JSON: EOF while parsing a value at line 1 column 5"
            ),
            (5, "[1,2]", "not a JSON object"),
            (6, "42", "not a JSON object"),
            (7, "\"s\"", "not a JSON object"),
            (
                8,
                "{\"a\":2} x",
                "invalid JSON: trailing characters at line 1 column 9"
            ),
            (
                9,
                "not json",
                "invalid JSON: expected ident at line 1 column 2"
            ),
        ]
    );
    let (_, _, bad) = decode("[1,");
    assert!(
        bad[0].reason.starts_with("invalid JSON: "),
        "{}",
        bad[0].reason
    );
    let (_, _, bad) = decode("{1:2}");
    assert_eq!(
        bad[0].reason,
        "invalid JSON: key must be a string at line 1 column 2"
    );
}

#[test]
fn empty_input() {
    for input in [vec![], vec![(1, ""), (2, "  ")], vec![(7, "oops")]] {
        let (batch, rows, _) = decode_json_lines(input);
        assert_eq!((batch.num_rows(), batch.num_columns()), (0, 0));
        assert!(rows.is_empty());
        assert_eq!(encode(&batch), "");
    }
    let header = vec!["a".to_string()];
    let (batch, rows, bad) = decode_csv_lines(&header, []);
    assert_eq!((batch.num_rows(), batch.num_columns()), (0, 0));
    assert!(rows.is_empty() && bad.is_empty());
}

#[test]
fn deep_nesting_is_kept() {
    let deep = format!("{{\"d\":{}{}}}", "[".repeat(5000), "]".repeat(5000));
    let (batch, _, bad) = decode(&deep);
    assert!(bad.is_empty());
    assert_eq!(encode(&batch), format!("{deep}\n"));
    let (_, _, bad) = decode(&"[".repeat(5000));
    assert!(bad[0].reason.starts_with("invalid JSON"));
}

#[test]
fn float_formatting() {
    let samples = [
        12.0,
        0.1,
        -0.0,
        1e20,
        1e21,
        1.5e-7,
        123456.789,
        f64::MAX,
        f64::MIN_POSITIVE,
        5e-324,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];
    let batch = RecordBatch::try_from_iter([(
        "f",
        Arc::new(Float64Array::from(samples.to_vec())) as ArrayRef,
    )])
    .unwrap();
    let out = encode(&batch);
    for (line, v) in out.lines().zip(samples) {
        let expected = serde_json::to_string(&json!({ "f": v })).unwrap();
        assert_eq!(line, expected);
    }
    assert!(out.starts_with("{\"f\":12.0}\n{\"f\":0.1}\n{\"f\":-0.0}\n{\"f\":1e+20}\n"));
    assert!(out.ends_with("{\"f\":null}\n{\"f\":null}\n{\"f\":null}\n"));
}

#[test]
fn encodes_typed_columns_and_json_documents() {
    let fields = vec![
        Field::new("i", DataType::Int64, true),
        Field::new("b", DataType::Boolean, true),
        Field::new("s", DataType::Utf8, true),
        json_field("j"),
    ];
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        vec![
            Arc::new(Int64Array::from(vec![Some(i64::MIN), None, Some(0)])),
            Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
            Arc::new(StringArray::from(vec![Some("a\"b"), None, Some("")])),
            Arc::new(StringArray::from(vec![
                Some("{\n  \"k\": [1,\r\n 2]\n}"),
                Some(""),
                None,
            ])),
        ],
    )
    .unwrap();
    let out = encode(&batch);
    assert_eq!(
        out,
        concat!(
            r#"{"i":-9223372036854775808,"b":true,"s":"a\"b","j":{   "k": [1,   2] }}"#,
            "\n",
            r#"{"b":false,"j":null}"#,
            "\n",
            r#"{"i":0,"s":""}"#,
            "\n",
        )
    );
    assert_eq!(row_to_json(&batch, 2), r#"{"i":0,"s":""}"#);
    assert_eq!(row_to_json(&batch, 3), "{}");
    // Escaped column names.
    let batch =
        RecordBatch::try_from_iter([("a\"b\n", Arc::new(Int64Array::from(vec![1])) as ArrayRef)])
            .unwrap();
    assert_eq!(row_to_json(&batch, 0), r#"{"a\"b\n":1}"#);
}

#[test]
fn encodes_other_arrow_types_without_panicking() {
    use arrow::array::{Date32Array, Int32Array, NullArray, UInt64Array};
    let batch = RecordBatch::try_from_iter([
        (
            "i32",
            Arc::new(Int32Array::from(vec![Some(-5), None])) as ArrayRef,
        ),
        (
            "u64",
            Arc::new(UInt64Array::from(vec![u64::MAX, 1])) as ArrayRef,
        ),
        ("d", Arc::new(Date32Array::from(vec![0, 1])) as ArrayRef),
        ("n", Arc::new(NullArray::new(2)) as ArrayRef),
    ])
    .unwrap();
    assert_eq!(
        encode(&batch),
        concat!(
            r#"{"i32":-5,"u64":18446744073709551615,"d":"1970-01-01"}"#,
            "\n",
            r#"{"u64":1,"d":"1970-01-02"}"#,
            "\n"
        )
    );
}

#[test]
fn decode_then_encode_preserves_values() {
    let input = concat!(
        r#"{"type":"bid","auction":1007,"price":25.5,"ok":true,"tags":["a",{"b":null}],"extra":""}"#,
        "\n",
        r#"{"type":"bid","auction":-1,"price":3,"ok":false,"tags":{},"extra":"x\u0000y"}"#,
    );
    let (batch, _, _) = decode(input);
    let out = encode(&batch);
    // Mixed integers and floats are kept as written (a JSON column).
    assert_eq!(values(&out), values(input));
}

#[test]
fn csv_header() {
    assert_eq!(
        parse_csv_header("\u{feff}a,\"b,c\",\"d \"\"q\"\"\",\r").unwrap(),
        vec!["a", "b,c", "d \"q\"", ""]
    );
    assert!(
        parse_csv_header("a,b,a")
            .unwrap_err()
            .contains("duplicate column name `a`")
    );
    assert!(parse_csv_header("  ").is_err());
    assert!(parse_csv_header("a,\"b").is_err());
}

#[test]
fn csv_quoting_types_and_bad_records() {
    let header = parse_csv_header("id,name,price,flag,zip,note").unwrap();
    let input = concat!(
        "1,\"Smith, J.\",1.5,true,007,\"say \"\"hi\"\"\"\n",
        "\n",
        "-2,,3,false,,plain\n",
        "3,x,2e3,,01234,\n",
        "4,too,few\n",
        "5,\"open,1,true,1,x\n",
        "9223372036854775807,é,-0.25,true,12,\"a\rb\"\r\n",
        "6,a,1,true,1,b\rc,d\n",
    );
    let (batch, rows, bad) = decode_csv_lines(&header, lines(input));
    assert_eq!(rows, vec![1, 3, 4, 7]);
    assert_eq!(
        kinds(&batch),
        names_kinds(&[
            ("id", "int"),
            ("name", "utf8"),
            ("price", "float"),
            ("flag", "bool"),
            ("zip", "utf8"),
            ("note", "utf8")
        ])
    );
    assert_eq!(
        batch
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .as_ref(),
        &[1, -2, 3, i64::MAX]
    );
    assert_eq!(
        strs(&batch, "name"),
        vec![
            Some("Smith, J.".into()),
            None,
            Some("x".into()),
            Some("é".into())
        ]
    );
    assert_eq!(
        batch
            .column(2)
            .as_primitive::<Float64Type>()
            .values()
            .as_ref(),
        &[1.5, 3.0, 2000.0, -0.25]
    );
    let flag = batch.column(3).as_boolean();
    assert_eq!(
        flag.iter().collect::<Vec<_>>(),
        vec![Some(true), Some(false), None, Some(true)]
    );
    assert_eq!(
        strs(&batch, "zip"),
        vec![
            Some("007".into()),
            None,
            Some("01234".into()),
            Some("12".into())
        ]
    );
    assert_eq!(
        strs(&batch, "note"),
        vec![
            Some("say \"hi\"".into()),
            Some("plain".into()),
            None,
            Some("a\rb".into())
        ]
    );
    let got: Vec<(u64, &str)> = bad.iter().map(|b| (b.line, b.reason.as_str())).collect();
    assert_eq!(got[0], (5, "expected 6 fields, found 3"));
    assert_eq!(got[1].0, 6);
    assert!(got[1].1.starts_with("unterminated quoted field"));
    assert_eq!(got[2].0, 8);
    assert!(got[2].1.contains("carriage return"), "{}", got[2].1);
    assert_eq!(bad[0].raw, "4,too,few");
}

#[test]
fn csv_inference_edges() {
    let header = vec![
        "a".to_string(),
        "b".into(),
        "c".into(),
        "d".into(),
        "e".into(),
    ];
    let input = "+5,-0,1,9007199254740993,\n5,1,2.5,0.5,\n";
    let (batch, _, bad) = decode_csv_lines(&header, lines(input));
    assert!(bad.is_empty());
    // "+5" and "-0" are not canonical; 2^53+1 cannot mix with floats exactly; an
    // all-empty column is Utf8.
    assert_eq!(
        kinds(&batch),
        names_kinds(&[
            ("a", "utf8"),
            ("b", "utf8"),
            ("c", "float"),
            ("d", "utf8"),
            ("e", "utf8")
        ])
    );
    assert_eq!(
        encode(&batch),
        "{\"a\":\"+5\",\"b\":\"-0\",\"c\":1.0,\"d\":\"9007199254740993\"}\n\
         {\"a\":\"5\",\"b\":\"1\",\"c\":2.5,\"d\":\"0.5\"}\n"
    );
    let (batch, _, _) = decode_csv_lines(&header[..1], lines("nan\ninf\n1.0"));
    assert_eq!(kinds(&batch), names_kinds(&[("a", "utf8")]));
    let (batch, _, _) = decode_csv_lines(&header[..1], lines("True\nfalse"));
    assert_eq!(kinds(&batch), names_kinds(&[("a", "utf8")]));
}

/// A small deterministic generator for the randomized tests.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }
}

/// What a value classifies to, comparable across the two parsing paths.
fn normalized(raw: &str, hint: Hint) -> String {
    let mut owned = Vec::new();
    match classify(raw, hint, &mut owned) {
        Some(Val::StrOwned(i)) => format!("owned {:?}", owned[i as usize]),
        Some(Val::Float(f)) => format!("float {}", f.to_bits()),
        other => format!("{other:?}"),
    }
}

#[test]
fn fast_scanner_agrees_with_serde_json() {
    let seeds = [
        r#"{"type":"bid","auction":1007,"price":-25.5e-3,"ok":true,"no":false,"n":null,"url":"https://x/y?z=1","extra":""}"#,
        r#" { "a" : [1, {"b": "c\"d"}] , "e\u0066" : {"g":[]}, "h":"\u00e9\n\\", "i": -0, "j": 0.5E+7 } "#,
        r#"{"big":123456789012345678901234,"neg":-9223372036854775808,"pos":9223372036854775807,"x":1e400}"#,
        r#"{}"#,
        r#"{"k":"tab	inside","l":"é😀","m":[[[[]]]],"o":{"p":{"q":null}}}"#,
    ];
    let alphabet: Vec<char> = "{}[]\":,\\ \t0123456789.eE+-tfnulrsa/u\u{1}é😀x"
        .chars()
        .collect();
    let mut rng = Lcg(7);
    let (mut fast_ok, mut total) = (0, 0);
    for round in 0..30_000 {
        let mut chars: Vec<char> = seeds[round % seeds.len()].chars().collect();
        for _ in 0..1 + rng.next() % 3 {
            let at = rng.next() % (chars.len() + 1);
            let c = alphabet[rng.next() % alphabet.len()];
            match rng.next() % 4 {
                0 if at < chars.len() => {
                    chars.remove(at);
                }
                1 if at < chars.len() => chars[at] = c,
                2 => chars.truncate(at),
                _ => chars.insert(at, c),
            }
        }
        let line: String = chars.into_iter().collect();
        let mut fast = Vec::new();
        let fast_result = scan_object(&line, &mut fast);
        let mut slow = Vec::new();
        let mut de = serde_json::Deserializer::from_str(&line);
        let slow_result = (&mut de)
            .deserialize_map(ObjectVisitor { fields: &mut slow })
            .and_then(|()| de.end());
        total += 1;
        if fast_result.is_none() {
            continue;
        }
        fast_ok += 1;
        assert!(slow_result.is_ok(), "fast path accepted invalid {line:?}");
        let view = |v: &[Entry<'_>]| -> Vec<(String, String, String)> {
            v.iter()
                .map(|(k, raw, hint)| (k.to_string(), raw.to_string(), normalized(raw, *hint)))
                .collect()
        };
        assert_eq!(view(&fast), view(&slow), "line {line:?}");
    }
    assert!(
        fast_ok > total / 20,
        "only {fast_ok} of {total} mutated lines parsed"
    );
}

#[test]
fn next_escape_finds_the_first_byte() {
    let pool = [
        b'a', b'"', b'\\', 0x1f, 0x20, 0x7f, 0x80, 0xff, b'\n', b'0', 0x00, 0x21,
    ];
    let mut rng = Lcg(11);
    for _ in 0..20_000 {
        let len = rng.next() % 40;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                if rng.next().is_multiple_of(4) {
                    pool[rng.next() % pool.len()]
                } else {
                    b'a' + (rng.next() % 26) as u8
                }
            })
            .collect();
        let from = rng.next() % (len + 1);
        let expected = (from..len).find(|&i| ESCAPE[bytes[i] as usize] != 0);
        assert_eq!(next_escape(&bytes, from), expected, "{bytes:?} from {from}");
    }
}

#[test]
fn csv_batch_splitting_agrees_with_one_reader_per_line() {
    let alphabet = ['a', 'b', ',', '"', '"', ' ', '\r', 'é'];
    let header: Vec<String> = vec!["x".into(), "y".into(), "z".into()];
    let mut rng = Lcg(3);
    let texts: Vec<String> = (0..3000)
        .map(|_| {
            let len = rng.next() % 12;
            (0..len)
                .map(|_| alphabet[rng.next() % alphabet.len()])
                .collect()
        })
        .collect();
    let input: Vec<(u64, &str)> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| (i as u64 + 1, t.as_str()))
        .collect();
    let (batch, rows, bad) = decode_csv_lines(&header, input.iter().copied());
    let (mut expected_rows, mut expected_bad) = (Vec::new(), Vec::new());
    let mut expected_cells: Vec<Vec<Option<String>>> = vec![Vec::new(); 3];
    for &(line_no, text) in &input {
        let line = strip_line(text);
        if line.trim().is_empty() {
            continue;
        }
        let mut record = ::csv::StringRecord::new();
        match split_csv_line(line, &mut record) {
            Ok(()) if record.len() == 3 => {
                expected_rows.push(line_no);
                for (cells, cell) in expected_cells.iter_mut().zip(record.iter()) {
                    cells.push((!cell.is_empty()).then(|| cell.to_owned()));
                }
            }
            _ => expected_bad.push(line_no),
        }
    }
    assert_eq!(rows, expected_rows);
    assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), expected_bad);
    assert!(rows.len() > 100 && bad.len() > 100);
    for (name, cells) in ["x", "y", "z"].iter().zip(expected_cells) {
        assert_eq!(strs(&batch, name), cells, "column {name}");
    }
}
