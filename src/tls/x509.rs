//! Just enough of an X.509 (DER) reader for what `postern doctor` shows of
//! a certificate: its subject and validity. `None` on anything unexpected;
//! rustls and webpki do the real validation.

/// What the transcript shows of a certificate.
#[derive(Debug)]
pub struct CertInfo {
    pub subject: String,
    pub not_before: time::OffsetDateTime,
    pub not_after: time::OffsetDateTime,
}

/// Reads the subject and validity out of an X.509 certificate (DER), with
/// just enough of a DER reader for that; `None` on anything unexpected.
pub fn cert_info(der: &[u8]) -> Option<CertInfo> {
    let (tag, cert, _) = der_next(der)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, tbs, _) = der_next(cert)?;
    if tag != 0x30 {
        return None;
    }
    let mut rest = tbs;
    if tbs.first() == Some(&0xa0) {
        // [0] version
        rest = der_next(rest)?.2;
    }
    // serialNumber, signature, issuer
    for _ in 0..3 {
        rest = der_next(rest)?.2;
    }
    let (tag, validity, r) = der_next(rest)?;
    if tag != 0x30 {
        return None;
    }
    rest = r;
    let (t1, nb, vr) = der_next(validity)?;
    let (t2, na, _) = der_next(vr)?;
    let (t, subject, _) = der_next(rest)?;
    if t != 0x30 {
        return None;
    }
    Some(CertInfo {
        subject: name_text(subject),
        not_before: der_time(t1, nb)?,
        not_after: der_time(t2, na)?,
    })
}

/// One TLV: (tag, contents, rest). Single-byte tags, definite lengths.
pub fn der_next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in input.get(2..2 + n)? {
            len = (len << 8) | *b as usize;
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    Some((tag, input.get(header..end)?, &input[end..]))
}

/// `CN=…, O=…` from an X.501 Name (the attributes commonly shown).
fn name_text(mut name: &[u8]) -> String {
    let mut parts = Vec::new();
    while let Some((_, set, rest)) = der_next(name) {
        name = rest;
        let mut set = set;
        while let Some((_, atv, r)) = der_next(set) {
            set = r;
            let Some((0x06, oid, v)) = der_next(atv) else {
                continue;
            };
            let Some((_, value, _)) = der_next(v) else {
                continue;
            };
            let key = match oid {
                [0x55, 0x04, 0x03] => "CN",
                [0x55, 0x04, 0x06] => "C",
                [0x55, 0x04, 0x07] => "L",
                [0x55, 0x04, 0x08] => "ST",
                [0x55, 0x04, 0x0a] => "O",
                [0x55, 0x04, 0x0b] => "OU",
                _ => continue,
            };
            parts.push(format!("{key}={}", String::from_utf8_lossy(value)));
        }
    }
    if parts.is_empty() {
        "(empty subject)".into()
    } else {
        parts.join(", ")
    }
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn der_time(tag: u8, v: &[u8]) -> Option<time::OffsetDateTime> {
    let s = std::str::from_utf8(v).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: i32 = s.get(0..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, s.get(2..)?)
        }
        0x18 => (s.get(0..4)?.parse().ok()?, s.get(4..)?),
        _ => return None,
    };
    let n = |i: usize| -> Option<u8> { rest.get(i..i + 2)?.parse().ok() };
    let date =
        time::Date::from_calendar_date(year, time::Month::try_from(n(0)?).ok()?, n(2)?).ok()?;
    let t = time::Time::from_hms(n(4)?, n(6)?, n(8)?).ok()?;
    Some(time::PrimitiveDateTime::new(date, t).assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_subject_and_expiry_of_a_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["mx.example.com".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mx.example.com");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example");
        params.not_before = rcgen::date_time_ymd(2020, 1, 2);
        params.not_after = rcgen::date_time_ymd(2049, 12, 31);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.clone().self_signed(&key).unwrap();
        let info = cert_info(cert.der()).unwrap();
        assert!(info.subject.contains("CN=mx.example.com"), "{info:?}");
        assert!(info.subject.contains("O=Example"), "{info:?}");
        assert_eq!(info.not_before.date().to_string(), "2020-01-02");
        assert_eq!(info.not_after.date().to_string(), "2049-12-31");
        // GeneralizedTime from 2050 on.
        params.not_after = rcgen::date_time_ymd(2051, 6, 1);
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            cert_info(cert.der()).unwrap().not_after.date().to_string(),
            "2051-06-01"
        );
        assert!(cert_info(b"\x30\x03\x02\x01\x01").is_none());
        assert!(cert_info(b"").is_none());
    }
}
