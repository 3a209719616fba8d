//! An index over the embedded Envoy descriptor set, read at the wire level
//! without building a pool: where each `.proto` file's bytes are, what it
//! imports, and which file defines each message, enum and extension name.
//! It lets the pool be built from only the files a configuration needs (the
//! working set) instead of all of them; see [`super::descriptors`].

use std::collections::{HashMap, HashSet};

use prost::encoding::{decode_key, decode_varint, encode_key, encode_varint, WireType};
use prost::Message;

/// Just the parts of `google.protobuf.FileDescriptorProto` the index needs;
/// prost skips every other field without building it.
#[derive(Clone, PartialEq, Message)]
struct FileHeader {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    package: String,
    #[prost(string, repeated, tag = "3")]
    dependency: Vec<String>,
    #[prost(message, repeated, tag = "4")]
    message_type: Vec<MessageHeader>,
    #[prost(message, repeated, tag = "5")]
    enum_type: Vec<NamedHeader>,
    #[prost(message, repeated, tag = "7")]
    extension: Vec<NamedHeader>,
}

/// `google.protobuf.DescriptorProto`: its name and what it nests.
#[derive(Clone, PartialEq, Message)]
struct MessageHeader {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, repeated, tag = "3")]
    nested_type: Vec<MessageHeader>,
    #[prost(message, repeated, tag = "4")]
    enum_type: Vec<NamedHeader>,
    #[prost(message, repeated, tag = "6")]
    extension: Vec<NamedHeader>,
}

/// Any descriptor of which only the name (field 1) matters here.
#[derive(Clone, PartialEq, Message)]
struct NamedHeader {
    #[prost(string, tag = "1")]
    name: String,
}

/// One `.proto` file of the set.
struct FileEntry {
    bytes: &'static [u8],
    dependencies: Vec<usize>,
}

/// Files of a serialized `FileDescriptorSet`, by index, and the file that
/// defines each fully qualified name.
pub struct DescriptorIndex {
    files: Vec<FileEntry>,
    definitions: HashMap<String, usize>,
}

impl DescriptorIndex {
    /// Indexes a serialized `FileDescriptorSet`. Err when it is malformed or
    /// a file imports one the set does not contain.
    pub fn new(set: &'static [u8]) -> Result<Self, String> {
        let mut slices = Vec::new();
        let mut rest = set;
        while !rest.is_empty() {
            let (number, wire_type) = decode_key(&mut rest).map_err(|e| e.to_string())?;
            if number != 1 || wire_type != WireType::LengthDelimited {
                return Err(format!("unexpected field {number} in a FileDescriptorSet"));
            }
            let length = decode_varint(&mut rest).map_err(|e| e.to_string())? as usize;
            let file = rest.get(..length).ok_or("truncated FileDescriptorSet")?;
            slices.push(file);
            rest = &rest[length..];
        }
        let mut headers = Vec::with_capacity(slices.len());
        for bytes in &slices {
            headers.push(FileHeader::decode(*bytes).map_err(|e| e.to_string())?);
        }
        let by_file_name: HashMap<&str, usize> = headers
            .iter()
            .enumerate()
            .map(|(index, header)| (header.name.as_str(), index))
            .collect();
        let mut definitions = HashMap::new();
        let mut files = Vec::with_capacity(slices.len());
        for (index, (header, bytes)) in headers.iter().zip(slices).enumerate() {
            let mut dependencies = Vec::with_capacity(header.dependency.len());
            for import in &header.dependency {
                let found = by_file_name.get(import.as_str()).ok_or_else(|| {
                    format!("{} imports {import}, which the set lacks", header.name)
                })?;
                dependencies.push(*found);
            }
            let mut define = |name: String| {
                definitions.insert(name, index);
            };
            let scope = &header.package;
            for named in header.enum_type.iter().chain(&header.extension) {
                define(qualify(scope, &named.name));
            }
            for message in &header.message_type {
                define_message(scope, message, &mut define);
            }
            files.push(FileEntry {
                bytes,
                dependencies,
            });
        }
        Ok(DescriptorIndex { files, definitions })
    }

    /// Number of files in the set.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Whether some file of the set defines `full_name` (a message, enum or
    /// extension).
    pub fn defines(&self, full_name: &str) -> bool {
        self.definitions.contains_key(full_name)
    }

    /// The files defining `names` and every file they import, transitively;
    /// names the set does not define are skipped.
    pub fn closure<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Vec<usize> {
        let mut seen = HashSet::new();
        let mut pending: Vec<usize> = names
            .into_iter()
            .filter_map(|name| self.definitions.get(name).copied())
            .collect();
        let mut order = Vec::new();
        while let Some(file) = pending.pop() {
            if seen.insert(file) {
                order.push(file);
                pending.extend(&self.files[file].dependencies);
            }
        }
        order.sort_unstable();
        order
    }

    /// A serialized `FileDescriptorSet` of `files` only (byte-for-byte the
    /// embedded files: custom options such as PGV rules are kept).
    pub fn encode_set(&self, files: &[usize]) -> Vec<u8> {
        let total: usize = files.iter().map(|&f| self.files[f].bytes.len() + 6).sum();
        let mut set = Vec::with_capacity(total);
        for &file in files {
            let bytes = self.files[file].bytes;
            encode_key(1, WireType::LengthDelimited, &mut set);
            encode_varint(bytes.len() as u64, &mut set);
            set.extend_from_slice(bytes);
        }
        set
    }
}

fn qualify(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_string()
    } else {
        format!("{scope}.{name}")
    }
}

fn define_message(scope: &str, message: &MessageHeader, define: &mut impl FnMut(String)) {
    let full_name = qualify(scope, &message.name);
    for named in message.enum_type.iter().chain(&message.extension) {
        define(qualify(&full_name, &named.name));
    }
    for nested in &message.nested_type {
        define_message(&full_name, nested, define);
    }
    define(full_name);
}

/// Every dotted identifier in `text` (`a.b.C`, as in type URLs like
/// `type.googleapis.com/envoy.extensions.filters.http.router.v3.Router`):
/// the candidates for type names a configuration text mentions.
pub fn dotted_identifiers(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .map(|token| token.trim_matches('.'))
        .filter(|token| token.contains('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, package: &str, deps: &[&str], messages: Vec<MessageHeader>) -> Vec<u8> {
        FileHeader {
            name: name.into(),
            package: package.into(),
            dependency: deps.iter().map(|d| d.to_string()).collect(),
            message_type: messages,
            enum_type: vec![NamedHeader {
                name: "Kind".into(),
            }],
            extension: vec![],
        }
        .encode_to_vec()
    }

    fn message(name: &str, nested: Vec<MessageHeader>) -> MessageHeader {
        MessageHeader {
            name: name.into(),
            nested_type: nested,
            enum_type: vec![],
            extension: vec![NamedHeader { name: "ext".into() }],
        }
    }

    fn set(files: &[Vec<u8>]) -> &'static [u8] {
        let mut bytes = Vec::new();
        for f in files {
            encode_key(1, WireType::LengthDelimited, &mut bytes);
            encode_varint(f.len() as u64, &mut bytes);
            bytes.extend_from_slice(f);
        }
        Box::leak(bytes.into_boxed_slice())
    }

    fn sample() -> DescriptorIndex {
        DescriptorIndex::new(set(&[
            file("base.proto", "p.base", &[], vec![message("Base", vec![])]),
            file(
                "mid.proto",
                "p.mid",
                &["base.proto"],
                vec![message("Mid", vec![message("Inner", vec![])])],
            ),
            file(
                "top.proto",
                "p.top",
                &["mid.proto"],
                vec![message("Top", vec![])],
            ),
            file("other.proto", "", &[], vec![message("Loose", vec![])]),
        ]))
        .unwrap()
    }

    #[test]
    fn names_of_messages_nested_messages_enums_and_extensions_are_indexed() {
        let index = sample();
        assert_eq!(index.file_count(), 4);
        for name in [
            "p.base.Base",
            "p.mid.Mid.Inner",
            "p.mid.Mid.Inner.ext",
            "p.mid.Kind",
            "Loose",
        ] {
            assert!(index.defines(name), "{name}");
        }
        assert!(!index.defines("p.mid.Inner"));
    }

    #[test]
    fn closure_follows_imports_and_skips_unknown_names() {
        let index = sample();
        assert_eq!(index.closure(["p.top.Top"]), vec![0, 1, 2]);
        assert_eq!(index.closure(["p.mid.Mid.Inner", "no.Such"]), vec![0, 1]);
        assert_eq!(index.closure(["Loose", "Loose"]), vec![3]);
        assert!(index.closure(["no.Such"]).is_empty());
    }

    #[test]
    fn encoded_subset_is_the_files_byte_for_byte() {
        let index = sample();
        let subset = index.encode_set(&[0, 1]);
        let again = DescriptorIndex::new(Box::leak(subset.into_boxed_slice())).unwrap();
        assert_eq!(again.file_count(), 2);
        assert!(again.defines("p.mid.Mid") && !again.defines("p.top.Top"));
    }

    #[test]
    fn malformed_sets_are_rejected() {
        assert!(DescriptorIndex::new(&[0x08, 0x01]).is_err());
        assert!(DescriptorIndex::new(&[0x0a, 0x05, 0x0a]).is_err());
        let missing_import = set(&[file("a.proto", "a", &["gone.proto"], vec![])]);
        let error = DescriptorIndex::new(missing_import)
            .err()
            .expect("rejected");
        assert!(error.contains("gone.proto"), "{error}");
    }

    #[test]
    fn dotted_identifiers_are_found_in_type_urls_and_yaml() {
        let text = "\"@type\": type.googleapis.com/envoy.a.v3.B\n name: x.y. z";
        let found: Vec<&str> = dotted_identifiers(text).collect();
        assert_eq!(found, vec!["type.googleapis.com", "envoy.a.v3.B", "x.y"]);
    }
}
