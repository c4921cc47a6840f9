//! `ptnet-sim abi`: the sizes and field offsets of the shared C structures
//! as the driver core defines them, for comparison with C headers.

use ptnet::abi::csb::{NmCsbAtok, NmCsbKtoa};
use ptnet::abi::netmap::{NetmapIf, NetmapRing, NetmapSlot};
use ptnet::abi::vnet::{VirtioNetHdr, VirtioNetHdrMrgRxbuf};
use serde_json::{json, Map, Value};
use std::mem::{offset_of, size_of};

fn entry(size: usize, fields: &[(&str, usize)]) -> Value {
    let f: Map<String, Value> = fields.iter().map(|(n, o)| (n.to_string(), json!(o))).collect();
    json!({ "size": size, "fields": f })
}

/// The layouts, keyed by C struct name.
pub fn abi() -> Value {
    let mut m = Map::new();
    m.insert(
        "netmap_slot".into(),
        entry(
            size_of::<NetmapSlot>(),
            &[
                ("buf_idx", offset_of!(NetmapSlot, buf_idx)),
                ("len", offset_of!(NetmapSlot, len)),
                ("flags", offset_of!(NetmapSlot, flags)),
                ("ptr", offset_of!(NetmapSlot, ptr)),
            ],
        ),
    );
    m.insert(
        "netmap_ring".into(),
        entry(
            size_of::<NetmapRing>(),
            &[
                ("buf_ofs", offset_of!(NetmapRing, buf_ofs)),
                ("num_slots", offset_of!(NetmapRing, num_slots)),
                ("nr_buf_size", offset_of!(NetmapRing, nr_buf_size)),
                ("ringid", offset_of!(NetmapRing, ringid)),
                ("dir", offset_of!(NetmapRing, dir)),
                ("head", offset_of!(NetmapRing, head)),
                ("cur", offset_of!(NetmapRing, cur)),
                ("tail", offset_of!(NetmapRing, tail)),
                ("flags", offset_of!(NetmapRing, flags)),
                ("ts", offset_of!(NetmapRing, ts)),
                ("offset_mask", offset_of!(NetmapRing, offset_mask)),
                ("buf_align", offset_of!(NetmapRing, buf_align)),
                ("sem", offset_of!(NetmapRing, sem)),
                ("slot", NetmapRing::SLOTS_OFFSET),
            ],
        ),
    );
    m.insert(
        "netmap_if".into(),
        entry(
            size_of::<NetmapIf>(),
            &[
                ("ni_name", offset_of!(NetmapIf, ni_name)),
                ("ni_version", offset_of!(NetmapIf, ni_version)),
                ("ni_flags", offset_of!(NetmapIf, ni_flags)),
                ("ni_tx_rings", offset_of!(NetmapIf, ni_tx_rings)),
                ("ni_rx_rings", offset_of!(NetmapIf, ni_rx_rings)),
                ("ni_bufs_head", offset_of!(NetmapIf, ni_bufs_head)),
                ("ni_host_tx_rings", offset_of!(NetmapIf, ni_host_tx_rings)),
                ("ni_host_rx_rings", offset_of!(NetmapIf, ni_host_rx_rings)),
                ("ni_spare1", offset_of!(NetmapIf, ni_spare1)),
                ("ring_ofs", offset_of!(NetmapIf, ring_ofs)),
            ],
        ),
    );
    m.insert(
        "nm_csb_atok".into(),
        entry(
            size_of::<NmCsbAtok>(),
            &[
                ("head", offset_of!(NmCsbAtok, head)),
                ("cur", offset_of!(NmCsbAtok, cur)),
                ("appl_need_kick", offset_of!(NmCsbAtok, appl_need_kick)),
                ("sync_flags", offset_of!(NmCsbAtok, sync_flags)),
                ("pad", offset_of!(NmCsbAtok, pad)),
            ],
        ),
    );
    m.insert(
        "nm_csb_ktoa".into(),
        entry(
            size_of::<NmCsbKtoa>(),
            &[
                ("hwcur", offset_of!(NmCsbKtoa, hwcur)),
                ("hwtail", offset_of!(NmCsbKtoa, hwtail)),
                ("kern_need_kick", offset_of!(NmCsbKtoa, kern_need_kick)),
                ("pad", offset_of!(NmCsbKtoa, pad)),
            ],
        ),
    );
    m.insert(
        "virtio_net_hdr".into(),
        entry(
            size_of::<VirtioNetHdr>(),
            &[
                ("flags", offset_of!(VirtioNetHdr, flags)),
                ("gso_type", offset_of!(VirtioNetHdr, gso_type)),
                ("hdr_len", offset_of!(VirtioNetHdr, hdr_len)),
                ("gso_size", offset_of!(VirtioNetHdr, gso_size)),
                ("csum_start", offset_of!(VirtioNetHdr, csum_start)),
                ("csum_offset", offset_of!(VirtioNetHdr, csum_offset)),
            ],
        ),
    );
    m.insert(
        "virtio_net_hdr_mrg_rxbuf".into(),
        entry(
            size_of::<VirtioNetHdrMrgRxbuf>(),
            &[
                ("hdr", offset_of!(VirtioNetHdrMrgRxbuf, hdr)),
                ("num_buffers", offset_of!(VirtioNetHdrMrgRxbuf, num_buffers)),
            ],
        ),
    );
    Value::Object(m)
}
