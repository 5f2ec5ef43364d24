//! The dataflow graph of a pipeline: which streams each operator and sink
//! reads, from their `from` keys, checked before anything runs.
//!
//! A stream is what a source reads, or one output of an operator (its main
//! output `out`, or a side output it emits to by name). An operator without
//! `from` reads the operator before it (the first one: every source), and
//! a sink without `from` the last operator's main output (with no operator:
//! every source), so a pipeline written as a chain is the same graph as
//! before. A reader of several streams takes their union.
//!
//! Each reader numbers its upstream senders one after the other: the
//! senders of its first stream (one for a source, one per worker for an
//! operator), then those of the next. Every envelope carries its sender's
//! number, so watermarks (the smallest over all of them) and barrier
//! alignment (all of them) see every input, and the stream a record came
//! from is the [`Input`] whose range holds its number.

use anyhow::{Result, anyhow, bail};
use std::collections::HashSet;
use std::ops::Range;
use toml::de::{DeTable, DeValue};

use crate::config::{Inputs, PipelineConfig};

/// The name of an operator's main output.
pub const MAIN_OUTPUT: &str = "out";

/// A stream: a source's records, or one output of an operator.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Stream {
    /// What source `.0` (its index in the file) reads.
    Source(usize),
    /// Output `output` of operator `operator` (its index in the file).
    Output {
        /// The operator's index.
        operator: usize,
        /// [`MAIN_OUTPUT`] or a side output's name.
        output: String,
    },
}

/// Who reads streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// An operator, by index.
    Operator(usize),
    /// A sink, by index.
    Sink(usize),
}

/// One input stream of a reader, and the numbers its senders have there.
#[derive(Debug, Clone)]
pub struct Input {
    /// The stream.
    pub stream: Stream,
    /// Input numbers of its senders at the reader: the source, or the
    /// operator's workers in order.
    pub senders: Range<usize>,
}

/// The checked graph of a pipeline.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// Per operator, its inputs in the order of its `from`.
    pub operators: Vec<Vec<Input>>,
    /// Per sink, its inputs in the order of its `from`.
    pub sinks: Vec<Vec<Input>>,
}

impl Graph {
    /// Works out and checks the graph of a pipeline file's content
    /// (`text`, for the lines named in errors).
    ///
    /// # Errors
    /// On a name that is no stream, a cycle, a stream read twice by one
    /// reader, or a source or main output that nothing reads; the message
    /// names the line and the name.
    pub fn build(config: &PipelineConfig, text: &str) -> Result<Self> {
        let lines = Lines::new(text);
        let names = Names { config };
        let mut operators = Vec::with_capacity(config.operators.len());
        for (index, op) in config.operators.iter().enumerate() {
            let streams = match &op.from {
                Some(from) => names.resolve(from, &format!("operator `{}`", op.id), |element| {
                    lines.line_of_from("operator", index, element)
                })?,
                None if index == 0 => (0..config.sources.len()).map(Stream::Source).collect(),
                None => vec![Stream::Output {
                    operator: index - 1,
                    output: MAIN_OUTPUT.to_owned(),
                }],
            };
            operators.push(streams);
        }
        let mut sinks = Vec::with_capacity(config.sinks.len());
        for (index, sink) in config.sinks.iter().enumerate() {
            let streams = match sink.from() {
                Some(from) => names.resolve(
                    from,
                    &format!("sink {} (`{}`)", index + 1, sink_kind(config, index)),
                    |element| lines.line_of_from("sink", index, element),
                )?,
                None if config.operators.is_empty() => {
                    (0..config.sources.len()).map(Stream::Source).collect()
                }
                None => vec![Stream::Output {
                    operator: config.operators.len() - 1,
                    output: MAIN_OUTPUT.to_owned(),
                }],
            };
            sinks.push(streams);
        }
        check_cycles(config, &operators, &lines)?;
        check_read(config, &operators, &sinks, &lines)?;
        let senders = |stream: &Stream| match stream {
            Stream::Source(_) => 1,
            Stream::Output { operator, .. } => config.operators[*operator].parallelism,
        };
        let number = |streams: Vec<Stream>| {
            let mut next = 0;
            streams
                .into_iter()
                .map(|stream| {
                    let count = senders(&stream);
                    next += count;
                    Input {
                        stream,
                        senders: next - count..next,
                    }
                })
                .collect::<Vec<_>>()
        };
        Ok(Self {
            operators: operators.into_iter().map(number).collect(),
            sinks: sinks.into_iter().map(number).collect(),
        })
    }

    /// The inputs of `reader`.
    pub fn inputs(&self, reader: Reader) -> &[Input] {
        match reader {
            Reader::Operator(i) => &self.operators[i],
            Reader::Sink(i) => &self.sinks[i],
        }
    }

    /// How many upstream senders feed `reader`.
    pub fn senders(&self, reader: Reader) -> usize {
        self.inputs(reader).last().map_or(0, |i| i.senders.end)
    }

    /// Who reads `stream`, each with that input, in file order (operators
    /// first).
    pub fn readers<'a>(&'a self, stream: &'a Stream) -> impl Iterator<Item = (Reader, &'a Input)> {
        let operators = self
            .operators
            .iter()
            .enumerate()
            .flat_map(move |(i, inputs)| {
                inputs
                    .iter()
                    .filter(move |input| input.stream == *stream)
                    .map(move |input| (Reader::Operator(i), input))
            });
        let sinks = self.sinks.iter().enumerate().flat_map(move |(i, inputs)| {
            inputs
                .iter()
                .filter(move |input| input.stream == *stream)
                .map(move |input| (Reader::Sink(i), input))
        });
        operators.chain(sinks)
    }

    /// The outputs of operator `operator` that something reads, the main
    /// one included.
    pub fn outputs_read(&self, operator: usize) -> Vec<String> {
        let mut outputs = vec![MAIN_OUTPUT.to_owned()];
        for input in self.operators.iter().chain(&self.sinks).flatten() {
            if let Stream::Output {
                operator: o,
                output,
            } = &input.stream
                && *o == operator
                && !outputs.contains(output)
            {
                outputs.push(output.clone());
            }
        }
        outputs
    }

    /// How `weir status` names a stream: the source's name, the operator's
    /// id, or `id.output`.
    pub fn describe(config: &PipelineConfig, stream: &Stream) -> String {
        match stream {
            Stream::Source(i) => config.sources[*i].name(),
            Stream::Output { operator, output } if output == MAIN_OUTPUT => {
                config.operators[*operator].id.clone()
            }
            Stream::Output { operator, output } => {
                format!("{}.{output}", config.operators[*operator].id)
            }
        }
    }
}

fn sink_kind(config: &PipelineConfig, index: usize) -> String {
    format!("{:?}", config.sinks[index])
        .split([' ', '(', '{'])
        .next()
        .unwrap_or_default()
        .to_lowercase()
}

/// The names streams go by.
struct Names<'a> {
    config: &'a PipelineConfig,
}

impl Names<'_> {
    /// The streams `from` names; `line` gives the line of its element `i`
    /// (`None`: of the key).
    fn resolve(
        &self,
        from: &Inputs,
        reader: &str,
        line: impl Fn(Option<usize>) -> Option<usize>,
    ) -> Result<Vec<Stream>> {
        let many = matches!(from, Inputs::Many(_));
        let mut streams: Vec<Stream> = Vec::new();
        for (element, name) in from.names().iter().enumerate() {
            let at = at(line(many.then_some(element)).or_else(|| line(None)));
            let found = self
                .find(name)
                .map_err(|e| anyhow!("{at}field `from` of {reader}: {e}"))?;
            for stream in found {
                if streams.contains(&stream) {
                    bail!("{at}field `from` of {reader}: `{name}` is named twice");
                }
                streams.push(stream);
            }
        }
        Ok(streams)
    }

    fn find(&self, name: &str) -> Result<Vec<Stream>, String> {
        let c = self.config;
        let sources: Vec<Stream> = (0..c.sources.len())
            .filter(|&i| c.sources[i].name() == name)
            .map(Stream::Source)
            .collect();
        let operator = c.operators.iter().position(|o| o.id == name);
        match (sources.is_empty(), operator) {
            (false, Some(_)) => {
                return Err(format!(
                    "`{name}` is both a source's name and an operator's id; rename one"
                ));
            }
            (false, None) => return Ok(sources),
            (true, Some(operator)) => {
                return Ok(vec![Stream::Output {
                    operator,
                    output: MAIN_OUTPUT.to_owned(),
                }]);
            }
            (true, None) => {}
        }
        if let Some((id, output)) = name.split_once('.')
            && let Some(operator) = c.operators.iter().position(|o| o.id == id)
        {
            if output.is_empty() {
                return Err(format!("`{name}` names no output of operator `{id}`"));
            }
            return Ok(vec![Stream::Output {
                operator,
                output: output.to_owned(),
            }]);
        }
        let mut known: Vec<String> = Vec::new();
        for source in &c.sources {
            let name = format!("`{}`", source.name());
            if !known.contains(&name) {
                known.push(name);
            }
        }
        known.extend(c.operators.iter().map(|o| format!("`{}`", o.id)));
        Err(format!(
            "`{name}` names no source or operator (known: {}; `id.output` is an operator's side \
             output)",
            known.join(", ")
        ))
    }
}

/// Refuses an operator that reads, through any path, an output of its own.
fn check_cycles(config: &PipelineConfig, operators: &[Vec<Stream>], lines: &Lines) -> Result<()> {
    // Depth first over "reads from"; a grey operator met again closes a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        at: usize,
        operators: &[Vec<Stream>],
        marks: &mut [Mark],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        marks[at] = Mark::Open;
        path.push(at);
        for stream in &operators[at] {
            let Stream::Output { operator, .. } = stream else {
                continue;
            };
            match marks[*operator] {
                Mark::Open => {
                    let start = path.iter().position(|p| p == operator).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(*operator);
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(cycle) = visit(*operator, operators, marks, path) {
                        return Some(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks[at] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; operators.len()];
    for start in 0..operators.len() {
        if marks[start] != Mark::New {
            continue;
        }
        let Some(cycle) = visit(start, operators, &mut marks, &mut Vec::new()) else {
            continue;
        };
        // cycle = [a, b, …, a], each reading the next: name it the way
        // data flows, from the operator whose `from` closes it.
        let ids: Vec<&str> = cycle
            .iter()
            .rev()
            .map(|&i| config.operators[i].id.as_str())
            .collect();
        let reader = cycle[cycle.len() - 2];
        let op = &config.operators[reader];
        let at = at(lines.line_of_from("operator", reader, None));
        bail!(
            "{at}field `from` of operator `{}`: `{}` is a cycle; an operator cannot read its own \
             output, directly or through others",
            op.id,
            ids.join(" -> ")
        );
    }
    Ok(())
}

/// Refuses a source, or an operator's main output, that nothing reads: its
/// records would be lost without a word. Side outputs are emitted by name
/// at run time, so one that nothing reads is dropped, as it always was.
fn check_read(
    config: &PipelineConfig,
    operators: &[Vec<Stream>],
    sinks: &[Vec<Stream>],
    lines: &Lines,
) -> Result<()> {
    let read: HashSet<&Stream> = operators.iter().chain(sinks).flatten().collect();
    for (index, source) in config.sources.iter().enumerate() {
        if !read.contains(&Stream::Source(index)) {
            bail!(
                "{}source `{}` is read by no operator or sink; name it in a `from`, or remove it",
                at(lines.table_line("source", index)),
                source.name()
            );
        }
    }
    for (index, op) in config.operators.iter().enumerate() {
        let main = Stream::Output {
            operator: index,
            output: MAIN_OUTPUT.to_owned(),
        };
        if !read.contains(&main) {
            bail!(
                "{}the output of operator `{}` is read by no operator or sink; name `{}` in a \
                 `from` (a `blackhole` sink discards it)",
                at(lines.table_line("operator", index)),
                op.id,
                op.id
            );
        }
    }
    Ok(())
}

fn at(line: Option<usize>) -> String {
    line.map(|l| format!("line {l}: ")).unwrap_or_default()
}

/// Lines of the pipeline file's tables and keys, from the TOML parser's spans.
struct Lines<'a> {
    text: &'a str,
    document: Option<DeTable<'a>>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            document: DeTable::parse(text).ok().map(|d| d.into_inner()),
        }
    }

    fn line_of(&self, offset: usize) -> usize {
        self.text
            .get(..offset)
            .map_or(0, |before| before.matches('\n').count())
            + 1
    }

    /// Table `index` of the array of tables `name` (`[[name]]`).
    fn table(&self, name: &str, index: usize) -> Option<&DeTable<'a>> {
        let (_, value) = self
            .document
            .as_ref()?
            .iter()
            .find(|(key, _)| &**key.get_ref() == name)?;
        let DeValue::Array(tables) = value.get_ref() else {
            return None;
        };
        match tables.as_ref().get(index)?.get_ref() {
            DeValue::Table(table) => Some(table),
            _ => None,
        }
    }

    /// The line of the first key of table `index` of `[[name]]`.
    fn table_line(&self, name: &str, index: usize) -> Option<usize> {
        let start = self
            .table(name, index)?
            .iter()
            .map(|(key, _)| key.span().start)
            .min()?;
        Some(self.line_of(start))
    }

    /// The line of the `from` key of table `index` of `[[name]]`, or of its
    /// element `element`.
    fn line_of_from(&self, name: &str, index: usize, element: Option<usize>) -> Option<usize> {
        let (key, value) = self
            .table(name, index)?
            .iter()
            .find(|(key, _)| &**key.get_ref() == "from")?;
        let span = match (element, value.get_ref()) {
            (Some(i), DeValue::Array(items)) => items.as_ref().get(i)?.span(),
            _ => key.span(),
        };
        Some(self.line_of(span.start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(text: &str) -> Result<Graph> {
        let config: PipelineConfig = toml::from_str(text)?;
        Graph::build(&config, text)
    }

    fn output(operator: usize, output: &str) -> Stream {
        Stream::Output {
            operator,
            output: output.to_owned(),
        }
    }

    #[test]
    fn a_chain_reads_as_before() {
        let g = graph(
            "[[source]]\ntype = \"stdin\"\n[[source]]\nname = \"b\"\ntype = \"stdin\"\n\
             [[operator]]\nid = \"x\"\nmodule = \"x.wasm\"\nparallelism = 3\n\
             [[operator]]\nid = \"y\"\nmodule = \"y.wasm\"\n\
             [[sink]]\ntype = \"stdout\"\n[[sink]]\ntype = \"stdout\"\nfrom = \"x.late\"\n",
        )
        .unwrap();
        let streams = |inputs: &[Input]| {
            inputs
                .iter()
                .map(|i| (i.stream.clone(), i.senders.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            streams(&g.operators[0]),
            vec![(Stream::Source(0), 0..1), (Stream::Source(1), 1..2)]
        );
        assert_eq!(streams(&g.operators[1]), vec![(output(0, "out"), 0..3)]);
        assert_eq!(streams(&g.sinks[0]), vec![(output(1, "out"), 0..1)]);
        assert_eq!(streams(&g.sinks[1]), vec![(output(0, "late"), 0..3)]);
        assert_eq!(g.outputs_read(0), vec!["out".to_owned(), "late".to_owned()]);
    }

    #[test]
    fn a_diamond_numbers_the_senders_of_each_branch_one_after_the_other() {
        let g = graph(
            "[[source]]\nname = \"in\"\ntype = \"stdin\"\n\
             [[operator]]\nid = \"l\"\nmodule = \"x.wasm\"\nparallelism = 2\n\
             [[operator]]\nid = \"r\"\nmodule = \"x.wasm\"\nfrom = \"in\"\nparallelism = 3\n\
             [[operator]]\nid = \"j\"\nmodule = \"x.wasm\"\nfrom = [\"r\", \"l\"]\n\
             [[sink]]\ntype = \"stdout\"\n[[sink]]\ntype = \"stdout\"\nfrom = \"in\"\n",
        )
        .unwrap();
        assert_eq!(g.senders(Reader::Operator(2)), 5);
        let ranges: Vec<_> = g.operators[2].iter().map(|i| i.senders.clone()).collect();
        assert_eq!(ranges, vec![0..3, 3..5]);
        let readers: Vec<Reader> = g.readers(&Stream::Source(0)).map(|(r, _)| r).collect();
        assert_eq!(
            readers,
            vec![Reader::Operator(0), Reader::Operator(1), Reader::Sink(1)]
        );
    }

    #[test]
    fn bad_graphs_name_the_line() {
        let err = graph(
            "[[source]]\ntype = \"stdin\"\n\n[[operator]]\nid = \"a\"\nmodule = \"a.wasm\"\n\
             from = \"a\"\n\n[[sink]]\ntype = \"stdout\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("line 7: "), "{err}");
        assert!(err.contains("`a -> a` is a cycle"), "{err}");
        let err = graph(
            "[[source]]\ntype = \"stdin\"\n\n[[sink]]\ntype = \"stdout\"\nfrom = [\n\"stdin\",\n\"nope\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("line 8: "), "{err}");
        assert!(err.contains("`nope` names no source or operator"), "{err}");
    }
}
