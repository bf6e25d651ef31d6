//! A small arithmetic evaluator: `+ - * / % ^`, parentheses, unary minus.
//!
//! Recursive descent over a byte cursor; depth is bounded so hostile input
//! cannot overflow the stack.

const MAX_DEPTH: usize = 64;

pub fn evaluate(expression: &str) -> Result<f64, String> {
    let mut parser = Parser {
        bytes: expression.as_bytes(),
        pos: 0,
        depth: 0,
    };
    let value = parser.sum()?;
    parser.skip_spaces();
    if parser.pos != parser.bytes.len() {
        return Err(format!(
            "unexpected `{}` at position {}",
            parser.bytes[parser.pos] as char,
            parser.pos + 1
        ));
    }
    if !value.is_finite() {
        return Err("the result is not a finite number (division by zero?)".into());
    }
    Ok(value)
}

/// Integers print without a fractional part.
pub fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn skip_spaces(&mut self) {
        while self
            .bytes
            .get(self.pos)
            .is_some_and(u8::is_ascii_whitespace)
        {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_spaces();
        self.bytes.get(self.pos).copied()
    }

    fn sum(&mut self) -> Result<f64, String> {
        let mut value = self.product()?;
        while let Some(op @ (b'+' | b'-')) = self.peek() {
            self.pos += 1;
            let rhs = self.product()?;
            value = if op == b'+' { value + rhs } else { value - rhs };
        }
        Ok(value)
    }

    fn product(&mut self) -> Result<f64, String> {
        let mut value = self.power()?;
        while let Some(op @ (b'*' | b'/' | b'%')) = self.peek() {
            self.pos += 1;
            let rhs = self.power()?;
            value = match op {
                b'*' => value * rhs,
                b'/' => value / rhs,
                _ => value % rhs,
            };
        }
        Ok(value)
    }

    fn power(&mut self) -> Result<f64, String> {
        let base = self.unary()?;
        if self.peek() == Some(b'^') {
            self.pos += 1;
            let exponent = self.nested(Self::power)?;
            return Ok(base.powf(exponent));
        }
        Ok(base)
    }

    fn unary(&mut self) -> Result<f64, String> {
        match self.peek() {
            Some(b'-') => {
                self.pos += 1;
                Ok(-self.nested(Self::unary)?)
            }
            Some(b'+') => {
                self.pos += 1;
                self.nested(Self::unary)
            }
            _ => self.atom(),
        }
    }

    fn atom(&mut self) -> Result<f64, String> {
        match self.peek() {
            Some(b'(') => {
                self.pos += 1;
                let value = self.nested(Self::sum)?;
                if self.peek() != Some(b')') {
                    return Err(format!("missing `)` at position {}", self.pos + 1));
                }
                self.pos += 1;
                Ok(value)
            }
            Some(c) if c.is_ascii_digit() || c == b'.' => {
                let start = self.pos;
                while self
                    .bytes
                    .get(self.pos)
                    .is_some_and(|c| c.is_ascii_digit() || *c == b'.')
                {
                    self.pos += 1;
                }
                let text = std::str::from_utf8(&self.bytes[start..self.pos]).unwrap_or_default();
                text.parse()
                    .map_err(|_| format!("`{text}` is not a number"))
            }
            Some(c) => Err(format!(
                "unexpected `{}` at position {}",
                c as char,
                self.pos + 1
            )),
            None => Err("the expression ended early".into()),
        }
    }

    fn nested(&mut self, rule: fn(&mut Self) -> Result<f64, String>) -> Result<f64, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("the expression is nested too deeply".into());
        }
        let value = rule(self);
        self.depth -= 1;
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluates_with_precedence() {
        assert_eq!(evaluate("12*(3+4)").unwrap(), 84.0);
        assert_eq!(evaluate("2^3^2").unwrap(), 512.0);
        assert_eq!(evaluate("-2 + 10 % 4 / 2").unwrap(), -1.0);
        assert_eq!(format_number(evaluate("7/2").unwrap()), "3.5");
        assert_eq!(format_number(84.0), "84");
    }

    #[test]
    fn reports_errors_instead_of_panicking() {
        assert!(evaluate("1/0").is_err());
        assert!(evaluate("(1+2").unwrap_err().contains("missing `)`"));
        assert!(evaluate("2 $ 3").unwrap_err().contains("unexpected `$`"));
        assert!(evaluate("").is_err());
        assert!(
            evaluate(&"(".repeat(10_000))
                .unwrap_err()
                .contains("too deeply")
        );
    }
}
