//! Decoding the guest instruction behind an access to a guest-physical
//! hole (MMIO where no device exists). Xen lets such reads return all ones
//! and drops such writes; with no decode assists under emulation, Pavise
//! decodes the common `mov` forms itself to do the same. Pure, host-tested.

/// What the faulting instruction does to the hole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Load `size` bytes into register `reg` (0 = rax … 15 = r15), zero-
    /// extended to `dest_size`; `high_byte` for AH/CH/DH/BH.
    Load {
        reg: u8,
        size: u8,
        dest_size: u8,
        high_byte: bool,
    },
    /// Store `size` bytes of `source`.
    Store { size: u8, source: Source },
}

/// What a store writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Register `reg` (0 = rax … 15 = r15); `high_byte` for AH/CH/DH/BH.
    Reg { reg: u8, high_byte: bool },
    /// The instruction's immediate, sign-extended to the store's size.
    Imm(u64),
}

impl Source {
    /// The `size` bytes stored, given the source register's value.
    pub fn value(self, size: u8, register: u64) -> u64 {
        let raw = match self {
            Source::Reg {
                high_byte: true, ..
            } => register >> 8,
            Source::Reg { .. } => register,
            Source::Imm(v) => v,
        };
        match size {
            8 => raw,
            n => raw & ((1u64 << (n * 8)) - 1),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub access: Access,
    pub len: u8,
}

/// A decoded `mov crN, reg` (0F 22 /r).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MovToCr {
    pub cr: u8,
    /// 0 = rax … 15 = r15.
    pub source: u8,
    pub len: u8,
}

/// Decodes `mov crN, reg`: an optional REX prefix (64-bit code), 0F 22, a
/// register-form ModRM (the CPU ignores `mod`: the operand is always a
/// register).
pub fn decode_mov_to_cr(bytes: &[u8], long: bool) -> Option<MovToCr> {
    let (rex, rest) = match bytes.first() {
        Some(&b) if long && (0x40..=0x4f).contains(&b) => (b, &bytes[1..]),
        _ => (0, bytes),
    };
    let [0x0f, 0x22, modrm, ..] = *rest else {
        return None;
    };
    let cr = ((modrm >> 3) & 7) | if rex & 0b100 != 0 { 8 } else { 0 };
    let source = (modrm & 7) | if rex & 0b001 != 0 { 8 } else { 0 };
    Some(MovToCr {
        cr,
        source,
        len: 3 + (rex != 0) as u8,
    })
}

/// Decodes `mov` loads/stores (8A/8B/88/89/C6/C7, 0F B6/B7) in 64-bit
/// (`long`) or 32-bit code. Anything else: `None`.
pub fn decode(bytes: &[u8], long: bool) -> Option<Decoded> {
    let mut i = 0;
    let mut opsize16 = false;
    let mut rex = 0u8;
    loop {
        match *bytes.get(i)? {
            0x66 => opsize16 = true,
            // Segment overrides and lock/rep do not change the form.
            0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 | 0xf0 | 0xf2 | 0xf3 => {}
            _ => break,
        }
        i += 1;
    }
    if long && (0x40..=0x4f).contains(bytes.get(i)?) {
        rex = bytes[i];
        i += 1;
    }
    let rex_w = rex & 8 != 0;
    let wide = if rex_w {
        8
    } else if opsize16 {
        2
    } else {
        4
    };
    let (opcode, two_byte) = match *bytes.get(i)? {
        0x0f => {
            i += 1;
            (*bytes.get(i)?, true)
        }
        b => (b, false),
    };
    i += 1;
    // mov al/eax/rax <-> [moffs]: no ModRM, an absolute address follows
    // (8 bytes in 64-bit code, 4 otherwise).
    if !two_byte && (0xa0..=0xa3).contains(&opcode) {
        let len = i + if long { 8 } else { 4 };
        if len > bytes.len() {
            return None;
        }
        let size = if opcode & 1 == 0 { 1 } else { wide };
        let access = if opcode < 0xa2 {
            Access::Load {
                reg: 0,
                size,
                dest_size: size,
                high_byte: false,
            }
        } else {
            Access::Store {
                size,
                source: Source::Reg {
                    reg: 0,
                    high_byte: false,
                },
            }
        };
        return Some(Decoded {
            access,
            len: len as u8,
        });
    }
    let modrm = *bytes.get(i)?;
    i += 1;
    let (md, reg, rm) = (modrm >> 6, (modrm >> 3) & 7, modrm & 7);
    if md == 3 {
        return None; // a register operand cannot touch memory
    }
    // Addressing bytes after ModRM.
    if rm == 4 {
        let sib = *bytes.get(i)?;
        i += 1;
        if md == 0 && sib & 7 == 5 {
            i += 4;
        }
    } else if md == 0 && rm == 5 {
        i += 4;
    }
    i += match md {
        1 => 1,
        2 => 4,
        _ => 0,
    };
    let reg = reg | if rex & 4 != 0 { 8 } else { 0 };
    let byte_reg = |reg: u8| -> (u8, bool) {
        // Without REX, byte registers 4-7 are AH, CH, DH, BH.
        if rex == 0 && (4..8).contains(&reg) {
            (reg - 4, true)
        } else {
            (reg, false)
        }
    };
    let access = match (two_byte, opcode) {
        (false, 0x8b) => Access::Load {
            reg,
            size: wide,
            dest_size: wide,
            high_byte: false,
        },
        (false, 0x8a) => {
            let (reg, high_byte) = byte_reg(reg);
            Access::Load {
                reg,
                size: 1,
                dest_size: 1,
                high_byte,
            }
        }
        (false, 0x89) => Access::Store {
            size: wide,
            source: Source::Reg {
                reg,
                high_byte: false,
            },
        },
        (false, 0x88) => {
            let (reg, high_byte) = byte_reg(reg);
            Access::Store {
                size: 1,
                source: Source::Reg { reg, high_byte },
            }
        }
        (false, 0xc7) if reg & 7 == 0 => {
            let imm = if opsize16 {
                i16::from_le_bytes([*bytes.get(i)?, *bytes.get(i + 1)?]) as i64 as u64
            } else {
                let b = bytes.get(i..i + 4)?;
                i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64 as u64
            };
            i += if opsize16 { 2 } else { 4 };
            Access::Store {
                size: wide,
                source: Source::Imm(imm),
            }
        }
        (false, 0xc6) if reg & 7 == 0 => {
            let imm = *bytes.get(i)? as u64;
            i += 1;
            Access::Store {
                size: 1,
                source: Source::Imm(imm),
            }
        }
        (true, 0xb6) => Access::Load {
            reg,
            size: 1,
            dest_size: wide,
            high_byte: false,
        },
        (true, 0xb7) => Access::Load {
            reg,
            size: 2,
            dest_size: wide,
            high_byte: false,
        },
        _ => return None,
    };
    if i > bytes.len() || i > 15 {
        return None;
    }
    Some(Decoded {
        access,
        len: i as u8,
    })
}

/// The register value after loading all ones as `access` says.
pub fn load_all_ones(old: u64, size: u8, dest_size: u8, high_byte: bool) -> u64 {
    load_value(old, u64::MAX, size, dest_size, high_byte)
}

/// The register after a `mov` load of `size` bytes of `value` into it,
/// zero-extended to `dest_size` (as the CPU does: 32-bit destinations zero
/// the upper half, 8- and 16-bit ones keep the rest; AH-style high bytes
/// go to bits 15:8).
pub fn load_value(old: u64, value: u64, size: u8, dest_size: u8, high_byte: bool) -> u64 {
    let loaded = if size >= 8 {
        value
    } else {
        value & ((1u64 << (size * 8)) - 1)
    };
    match (dest_size, high_byte) {
        (1, true) => (old & !0xff00) | (loaded & 0xff) << 8,
        (1, false) => (old & !0xff) | loaded,
        (2, _) => (old & !0xffff) | loaded,
        (4, _) => loaded & 0xffff_ffff,
        _ => loaded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mov_to_cr4_is_decoded() {
        // mov cr4, rax / mov cr4, rdi / mov cr4, r9 (REX.B) / 32-bit mov cr4, eax
        assert_eq!(
            decode_mov_to_cr(&[0x0f, 0x22, 0xe0, 0x90], true),
            Some(MovToCr {
                cr: 4,
                source: 0,
                len: 3
            })
        );
        assert_eq!(
            decode_mov_to_cr(&[0x0f, 0x22, 0xe7], true),
            Some(MovToCr {
                cr: 4,
                source: 7,
                len: 3
            })
        );
        assert_eq!(
            decode_mov_to_cr(&[0x41, 0x0f, 0x22, 0xe1], true),
            Some(MovToCr {
                cr: 4,
                source: 9,
                len: 4
            })
        );
        assert_eq!(
            decode_mov_to_cr(&[0x0f, 0x22, 0xe0], false),
            Some(MovToCr {
                cr: 4,
                source: 0,
                len: 3
            })
        );
        // mov cr3, rax is another register; a REX byte in 32-bit code is inc.
        assert_eq!(
            decode_mov_to_cr(&[0x0f, 0x22, 0xd8], true).map(|m| m.cr),
            Some(3)
        );
        assert_eq!(decode_mov_to_cr(&[0x41, 0x0f, 0x22, 0xe1], false), None);
        assert_eq!(decode_mov_to_cr(&[0x0f, 0x20, 0xe0], true), None);
        assert_eq!(decode_mov_to_cr(&[0x0f], true), None);
    }

    #[test]
    fn loads() {
        // mov eax, [rip+0x1234]
        assert_eq!(
            decode(&[0x8b, 0x05, 0x34, 0x12, 0, 0], true),
            Some(Decoded {
                access: Access::Load {
                    reg: 0,
                    size: 4,
                    dest_size: 4,
                    high_byte: false
                },
                len: 6
            })
        );
        // mov r9, [rax+8]  (REX.WR 8B /r, mod=01)
        assert_eq!(
            decode(&[0x4c, 0x8b, 0x48, 0x08], true),
            Some(Decoded {
                access: Access::Load {
                    reg: 9,
                    size: 8,
                    dest_size: 8,
                    high_byte: false
                },
                len: 4
            })
        );
        // movzx ecx, word [rbx+rsi*4+0x10]
        assert_eq!(
            decode(&[0x0f, 0xb7, 0x4c, 0xb3, 0x10], true),
            Some(Decoded {
                access: Access::Load {
                    reg: 1,
                    size: 2,
                    dest_size: 4,
                    high_byte: false
                },
                len: 5
            })
        );
        // mov ah, [rdi]
        assert_eq!(
            decode(&[0x8a, 0x27], true),
            Some(Decoded {
                access: Access::Load {
                    reg: 0,
                    size: 1,
                    dest_size: 1,
                    high_byte: true
                },
                len: 2
            })
        );
        // 16-bit: mov dx, [abs disp32 via SIB]
        assert_eq!(
            decode(&[0x66, 0x8b, 0x14, 0x25, 0, 0, 0xd0, 0xfe], true),
            Some(Decoded {
                access: Access::Load {
                    reg: 2,
                    size: 2,
                    dest_size: 2,
                    high_byte: false
                },
                len: 8
            })
        );
    }

    #[test]
    fn moffs_forms() {
        // movabs rax, [0xfed00000]
        assert_eq!(
            decode(&[0x48, 0xa1, 0, 0, 0xd0, 0xfe, 0, 0, 0, 0], true),
            Some(Decoded {
                access: Access::Load {
                    reg: 0,
                    size: 8,
                    dest_size: 8,
                    high_byte: false
                },
                len: 10
            })
        );
        // 32-bit code: mov [0xfee000b0], eax
        assert_eq!(
            decode(&[0xa3, 0xb0, 0, 0xe0, 0xfe], false),
            Some(Decoded {
                access: Access::Store {
                    size: 4,
                    source: Source::Reg {
                        reg: 0,
                        high_byte: false
                    }
                },
                len: 5
            })
        );
        assert_eq!(decode(&[0x48, 0xa1, 0, 0], true), None);
    }

    #[test]
    fn stores() {
        // mov [rdi], eax
        assert_eq!(
            decode(&[0x89, 0x07], true),
            Some(Decoded {
                access: Access::Store {
                    size: 4,
                    source: Source::Reg {
                        reg: 0,
                        high_byte: false
                    }
                },
                len: 2
            })
        );
        // mov [rax], r9d (REX.R)
        assert_eq!(
            decode(&[0x44, 0x89, 0x08], true),
            Some(Decoded {
                access: Access::Store {
                    size: 4,
                    source: Source::Reg {
                        reg: 9,
                        high_byte: false
                    }
                },
                len: 3
            })
        );
        // mov [rax], bh: the high byte of rbx
        let bh = decode(&[0x88, 0x38], true).unwrap();
        assert_eq!(
            bh.access,
            Access::Store {
                size: 1,
                source: Source::Reg {
                    reg: 3,
                    high_byte: true
                }
            }
        );
        // mov dword [rax+0x10], 0x12345678
        let imm = decode(&[0xc7, 0x40, 0x10, 0x78, 0x56, 0x34, 0x12], true).unwrap();
        assert_eq!(
            imm,
            Decoded {
                access: Access::Store {
                    size: 4,
                    source: Source::Imm(0x12345678)
                },
                len: 7
            }
        );
        // mov qword [rax], -1: the imm32 sign-extended
        let wide = decode(&[0x48, 0xc7, 0x00, 0xff, 0xff, 0xff, 0xff], true).unwrap();
        assert_eq!(
            wide.access,
            Access::Store {
                size: 8,
                source: Source::Imm(u64::MAX)
            }
        );
        assert_eq!(
            decode(&[0xc6, 0x00, 0x01], true),
            Some(Decoded {
                access: Access::Store {
                    size: 1,
                    source: Source::Imm(1)
                },
                len: 3
            })
        );
        // A truncated immediate is not a store.
        assert_eq!(decode(&[0xc7, 0x00, 0x78, 0x56], true), None);
        // What is stored.
        let reg = Source::Reg {
            reg: 3,
            high_byte: true,
        };
        assert_eq!(reg.value(1, 0x1234_5678), 0x56);
        assert_eq!(Source::Imm(u64::MAX).value(4, 0), 0xffff_ffff);
        assert_eq!(Source::Imm(7).value(8, 0), 7);
    }

    #[test]
    fn refusals() {
        assert_eq!(decode(&[0x8b, 0xc0], true), None); // register form
        assert_eq!(decode(&[0x01, 0x00], true), None); // add: not handled
        assert_eq!(decode(&[0x8b], true), None); // truncated
        assert_eq!(decode(&[0xc7, 0x48, 0x10], true), None); // reg field 1, not mov
        assert_eq!(decode(&[], true), None);
    }

    #[test]
    fn all_ones_follow_register_semantics() {
        assert_eq!(
            load_all_ones(0x1111_2222_3333_4444, 4, 4, false),
            0xffff_ffff
        );
        assert_eq!(
            load_all_ones(0x1111_2222_3333_4444, 2, 2, false),
            0x1111_2222_3333_ffff
        );
        assert_eq!(
            load_all_ones(0x1111_2222_3333_4444, 1, 1, true),
            0x1111_2222_3333_ff44
        );
        assert_eq!(load_all_ones(0x1111_2222_3333_4444, 1, 4, false), 0xff);
        assert_eq!(load_all_ones(0, 8, 8, false), u64::MAX);
    }
}
