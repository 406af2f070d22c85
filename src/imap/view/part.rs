//! The message tree [`super::MessageView`] keeps: one [`Part`] per MIME
//! part, with byte ranges into the message and what its Content-* fields
//! and (for messages) its envelope fields say, raw.

pub(super) const FLAG_MULTIPART: u8 = 1;
pub(super) const FLAG_RFC822: u8 = 2;
pub(super) const FLAG_TEXT: u8 = 4;
pub(super) const FLAG_DIGEST: u8 = 8;
pub(super) const FLAG_IS_MIME: u8 = 16;

/// A `name value` parameter of Content-Type or Content-Disposition.
pub(super) type Param = (Vec<u8>, Vec<u8>);

/// What the Content-* fields of a part say (Dovecot's `message_part_data`).
#[derive(Debug, Default, Clone)]
pub(super) struct PartData {
    pub(super) content_type: Option<Vec<u8>>,
    pub(super) content_subtype: Option<Vec<u8>>,
    pub(super) type_params: Vec<Param>,
    pub(super) transfer_encoding: Option<Vec<u8>>,
    pub(super) id: Option<Vec<u8>>,
    pub(super) description: Option<Vec<u8>>,
    pub(super) md5: Option<Vec<u8>>,
    pub(super) disposition: Option<Vec<u8>>,
    pub(super) disposition_params: Vec<Param>,
    pub(super) language: Option<Vec<Vec<u8>>>,
    pub(super) location: Option<Vec<u8>>,
}

/// One address of an ENVELOPE address list. A group is a start entry
/// (only `mailbox`, the group name) and an end entry (all `None`).
#[derive(Debug, Default, Clone)]
pub(super) struct Address {
    pub(super) name: Option<Vec<u8>>,
    pub(super) route: Option<Vec<u8>>,
    pub(super) mailbox: Option<Vec<u8>>,
    pub(super) domain: Option<Vec<u8>>,
    pub(super) invalid: bool,
}

/// The ENVELOPE fields of a header, raw. Of a repeated string field
/// Dovecot keeps the last occurrence; repeated address fields add up.
#[derive(Debug, Default, Clone)]
pub(super) struct Envelope {
    pub(super) date: Option<Vec<u8>>,
    pub(super) subject: Option<Vec<u8>>,
    pub(super) from: Option<Vec<Address>>,
    pub(super) sender: Option<Vec<Address>>,
    pub(super) reply_to: Option<Vec<Address>>,
    pub(super) to: Option<Vec<Address>>,
    pub(super) cc: Option<Vec<Address>>,
    pub(super) bcc: Option<Vec<Address>>,
    pub(super) in_reply_to: Option<Vec<u8>>,
    pub(super) message_id: Option<Vec<u8>>,
}

/// One MIME part: where its header and body are, and what they say.
#[derive(Debug, Clone)]
pub(super) struct Part {
    /// Offset of the header.
    pub(super) pos: usize,
    /// Header length, including the blank line when there is one.
    pub(super) hdr_len: usize,
    pub(super) hdr_lines: u32,
    /// Body length: everything up to the newline before the boundary that
    /// ends the part (or up to the end of the message).
    pub(super) body_len: usize,
    pub(super) body_lines: u32,
    pub(super) flags: u8,
    pub(super) depth: usize,
    pub(super) parent: Option<usize>,
    pub(super) children: Vec<usize>,
    pub(super) data: PartData,
    /// For the message itself and for the message inside a message/rfc822
    /// part: its envelope.
    pub(super) envelope: Option<Envelope>,
}

impl Part {
    pub(super) fn new(pos: usize, parent: Option<usize>, depth: usize) -> Part {
        Part {
            pos,
            hdr_len: 0,
            hdr_lines: 0,
            body_len: 0,
            body_lines: 0,
            flags: 0,
            depth,
            parent,
            children: Vec::new(),
            data: PartData::default(),
            envelope: None,
        }
    }

    pub(super) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}
