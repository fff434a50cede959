//! Exchange, tape and condition codes, held inline (no allocation per message).

use super::decode::Key;
use super::*;

/// An exchange or tape code of up to four ASCII bytes, stored without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Code([u8; 4]);

impl Code {
    pub fn new(text: &str) -> Code {
        if let Some(code) = Code::from_ascii(text.as_bytes()) {
            return code;
        }
        let mut b = [0u8; 4];
        for (slot, byte) in b.iter_mut().zip(text.bytes()) {
            *slot = byte;
        }
        Code(b)
    }
    /// A code from up to four ASCII bytes, without a UTF-8 check (ASCII is UTF-8); `None`
    /// for anything longer or not ASCII (read it as text, [`Code::new`]).
    pub fn from_ascii(bytes: &[u8]) -> Option<Code> {
        if !bytes.is_ascii() {
            return None;
        }
        // By pattern, not a copy of a length known only now: that was a call to memcpy for
        // each code, about a tenth of the decoder's time.
        Some(Code(match *bytes {
            [] => [0; 4],
            [a] => [a, 0, 0, 0],
            [a, b] => [a, b, 0, 0],
            [a, b, c] => [a, b, c, 0],
            [a, b, c, d] => [a, b, c, d],
            _ => return None,
        }))
    }

    pub fn as_str(&self) -> &str {
        let len = self.0.iter().position(|b| *b == 0).unwrap_or(4);
        std::str::from_utf8(&self.0[..len]).unwrap_or("")
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Code {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Code;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a short code")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Code, E> {
                Ok(Code::new(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Code, E> {
                Ok(Code::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// The condition codes of a trade or quote, held inline: the tapes allow at most four codes of
/// one character (Alpaca sends them as strings), so decoding one never allocates. A code is
/// kept to its first four bytes, like exchange codes; codes past the fourth are ignored.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Conditions {
    codes: [Code; 4],
    len: u8,
}

impl Conditions {
    pub const MAX: usize = 4;

    /// Adds a code; `false` (and nothing changes) when four are held already.
    pub fn push(&mut self, code: &str) -> bool {
        self.push_code(Code::new(code))
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.codes[..self.len as usize].iter().map(Code::as_str)
    }

    /// Adds a code already made; `false` (and nothing changes) when four are held already.
    pub fn push_code(&mut self, code: Code) -> bool {
        match self.codes.get_mut(self.len as usize) {
            Some(slot) => {
                *slot = code;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// Whether `code` (compared on its first four bytes) is among them.
    pub fn contains(&self, code: &str) -> bool {
        self.has(Code::new(code))
    }

    /// Whether `code` is among them ([`Self::contains`] for a code made once, not per trade).
    pub fn has(&self, code: Code) -> bool {
        self.codes[..self.len as usize].contains(&code)
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<S: AsRef<str>> FromIterator<S> for Conditions {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut c = Conditions::default();
        for s in iter {
            if !c.push(s.as_ref()) {
                break;
            }
        }
        c
    }
}

impl fmt::Debug for Conditions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for Conditions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Conditions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Conditions;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of condition codes")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Conditions, A::Error> {
                let mut c = Conditions::default();
                while let Some(code) = seq.next_element::<Key>()? {
                    c.push(code.as_str());
                }
                Ok(c)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Conditions, E> {
                Ok(Conditions::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Conditions, E> {
                Ok(Conditions::default())
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Conditions, D::Error> {
                d.deserialize_seq(V)
            }
        }
        d.deserialize_option(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A code made from ASCII bytes by pattern is the code of its first four bytes, as
        /// made byte by byte; anything longer or not ASCII is left to that.
        #[test]
        fn a_code_from_ascii_bytes_is_its_first_four_bytes(text in "[A-Z@ é.]{0,6}") {
            let mut bytes = [0u8; 4];
            for (slot, byte) in bytes.iter_mut().zip(text.bytes()) {
                *slot = byte;
            }
            prop_assert_eq!(Code::new(&text), Code(bytes));
            match Code::from_ascii(text.as_bytes()) {
                Some(code) => prop_assert_eq!(code, Code(bytes)),
                None => prop_assert!(text.len() > 4 || !text.is_ascii()),
            }
        }
    }
}
