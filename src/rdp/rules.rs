//! Which virtual channels may cross the gateway: a pure allow-list.
//!
//! Screen, keyboard and mouse travel on the I/O channel (slow path) and as
//! fast-path PDUs; they need no virtual channel at all. Everything that can
//! move data out of the session (clipboard, drives, printers, smart cards,
//! ports, USB, audio, cameras, file-bearing RAIL helpers) lives in a virtual
//! channel, so the rule is: deny by default, allow only what the screen
//! path needs, and name every refusal.

/// Static virtual channels (MS-RDPBCGR 2.2.1.3.4, 8-byte names) that may be
/// requested from the target. `drdynvc` is the carrier of dynamic channels,
/// which are then filtered one by one with [`dynamic_channel_allowed`].
const ALLOWED_STATIC: &[&str] = &["drdynvc"];

/// Dynamic virtual channels (MS-RDPEDYC) that may be opened. Display
/// control only carries monitor layout changes (resize). Graphics pipeline
/// (rdpgfx) stays off until the recorder can decode its codecs.
const ALLOWED_DYNAMIC: &[&str] = &["Microsoft::Windows::RDS::DisplayControl"];

/// Why a channel was refused; the audit event carries this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelVerdict {
    Allowed,
    Refused { reason: &'static str },
}

impl ChannelVerdict {
    pub fn is_allowed(&self) -> bool {
        matches!(self, ChannelVerdict::Allowed)
    }
}

/// Decide on a static channel by its name as sent in the client's network
/// data. Names are compared without case (clients differ in spelling) and
/// with trailing NULs removed.
pub fn static_channel(name: &str) -> ChannelVerdict {
    let name = name.trim_end_matches('\0');
    if ALLOWED_STATIC.iter().any(|a| a.eq_ignore_ascii_case(name)) {
        return ChannelVerdict::Allowed;
    }
    let lower = name.to_ascii_lowercase();
    let reason = match lower.as_str() {
        "cliprdr" => "clipboard is not allowed",
        "rdpdr" => "device redirection (drives, printers, smart cards, ports) is not allowed",
        "rdpsnd" => "audio redirection is not allowed",
        "rail" | "rail_wi" | "rail_ri" => "remote applications are not allowed",
        "encomsp" | "remdesk" => "remote assistance is not allowed",
        _ => "channel not on the allow-list",
    };
    ChannelVerdict::Refused { reason }
}

/// Decide on a dynamic channel by the name in the server's DVC Create
/// Request. Names are case-sensitive in MS-RDPEDYC, so the comparison is too.
pub fn dynamic_channel(name: &str) -> ChannelVerdict {
    if ALLOWED_DYNAMIC.contains(&name) {
        return ChannelVerdict::Allowed;
    }
    let reason = match name {
        "URBDRC" | "Microsoft::Windows::RDS::USBRedirection" => "USB redirection is not allowed",
        "XPSRD" | "Microsoft::Windows::RDS::XPSPrint" => "XPS printing is not allowed",
        "RDCamera_Device_Enumerator" => "camera redirection is not allowed",
        "AUDIO_INPUT" | "Microsoft::Windows::RDS::AudioInput" => "audio input is not allowed",
        "AUDIO_PLAYBACK_DVC" | "AUDIO_PLAYBACK_LOSSY_DVC" => "audio output is not allowed",
        "Microsoft::Windows::RDS::Graphics" => {
            "graphics pipeline is not decodable by the recorder yet"
        }
        "FileRedirectorChannel" => "file redirection is not allowed",
        "Microsoft::Windows::RDS::Clipboard" => "clipboard is not allowed",
        _ if name.starts_with("RDCamera_Device_") => "camera redirection is not allowed",
        _ => "channel not on the allow-list",
    };
    ChannelVerdict::Refused { reason }
}

/// Shorthand used by the relay.
pub fn dynamic_channel_allowed(name: &str) -> bool {
    dynamic_channel(name).is_allowed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_drdynvc_is_allowed_among_static_channels() {
        assert!(static_channel("drdynvc").is_allowed());
        assert!(static_channel("DRDYNVC").is_allowed());
        assert!(static_channel("drdynvc\0").is_allowed());
        for name in [
            "cliprdr", "CLIPRDR", "rdpdr", "rdpsnd", "rail", "rail_wi", "rail_ri", "encomsp",
            "remdesk", "", "drdynvc2", "drdynv", "unknown",
        ] {
            assert!(!static_channel(name).is_allowed(), "{name} must be refused");
        }
    }

    #[test]
    fn static_refusals_name_the_reason() {
        assert_eq!(
            static_channel("cliprdr"),
            ChannelVerdict::Refused {
                reason: "clipboard is not allowed"
            }
        );
        match static_channel("rdpdr") {
            ChannelVerdict::Refused { reason } => assert!(reason.contains("drives")),
            ChannelVerdict::Allowed => panic!("rdpdr allowed"),
        }
        assert_eq!(
            static_channel("zzz"),
            ChannelVerdict::Refused {
                reason: "channel not on the allow-list"
            }
        );
    }

    #[test]
    fn only_display_control_is_allowed_among_dynamic_channels() {
        assert!(dynamic_channel_allowed(
            "Microsoft::Windows::RDS::DisplayControl"
        ));
        for name in [
            "URBDRC",
            "Microsoft::Windows::RDS::USBRedirection",
            "XPSRD",
            "Microsoft::Windows::RDS::XPSPrint",
            "RDCamera_Device_Enumerator",
            "RDCamera_Device_0",
            "AUDIO_INPUT",
            "Microsoft::Windows::RDS::AudioInput",
            "AUDIO_PLAYBACK_DVC",
            "AUDIO_PLAYBACK_LOSSY_DVC",
            "Microsoft::Windows::RDS::Graphics",
            "FileRedirectorChannel",
            "Microsoft::Windows::RDS::Clipboard",
            "microsoft::windows::rds::displaycontrol",
            "",
            "anything-else",
        ] {
            assert!(!dynamic_channel_allowed(name), "{name} must be refused");
        }
    }

    #[test]
    fn dynamic_refusals_name_the_reason() {
        assert_eq!(
            dynamic_channel("URBDRC"),
            ChannelVerdict::Refused {
                reason: "USB redirection is not allowed"
            }
        );
        assert_eq!(
            dynamic_channel("RDCamera_Device_3"),
            ChannelVerdict::Refused {
                reason: "camera redirection is not allowed"
            }
        );
        assert_eq!(
            dynamic_channel("Vendor::Thing"),
            ChannelVerdict::Refused {
                reason: "channel not on the allow-list"
            }
        );
    }
}
