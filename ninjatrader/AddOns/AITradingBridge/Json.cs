// Json.cs -- JSON without a DLL for the AITradingBridge strategy: a writer whose numbers
// round-trip and whose text is pure ASCII, and a strict RFC 8259 reader.
// Part of the ai-trading-bridge NinjaScript add-on (see ninjatrader/README.md).

using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace NinjaTrader.NinjaScript.AddOns.AITradingBridgeClient
{
    /// <summary>
    /// Streaming JSON writer. Numbers use the invariant culture and round-trip exactly
    /// ("R", or G17 where "R" would not round-trip); strings are written as pure ASCII
    /// (control characters and everything outside printable ASCII as \uXXXX escapes).
    /// </summary>
    public sealed class AitbJsonWriter
    {
        private readonly StringBuilder sb = new StringBuilder(256);
        private bool needComma;

        public AitbJsonWriter BeginObject() { Separate(); sb.Append('{'); needComma = false; return this; }
        public AitbJsonWriter EndObject() { sb.Append('}'); needComma = true; return this; }
        public AitbJsonWriter BeginArray() { Separate(); sb.Append('['); needComma = false; return this; }
        public AitbJsonWriter EndArray() { sb.Append(']'); needComma = true; return this; }

        public AitbJsonWriter Name(string name)
        {
            Separate();
            AppendString(sb, name);
            sb.Append(':');
            needComma = false;
            return this;
        }

        public AitbJsonWriter Value(string value)
        {
            Separate();
            if (value == null) sb.Append("null"); else AppendString(sb, value);
            needComma = true;
            return this;
        }

        public AitbJsonWriter Value(double value)
        {
            Separate();
            sb.Append(FormatNumber(value));
            needComma = true;
            return this;
        }

        public AitbJsonWriter Value(long value)
        {
            Separate();
            sb.Append(value.ToString(CultureInfo.InvariantCulture));
            needComma = true;
            return this;
        }

        public AitbJsonWriter Value(bool value)
        {
            Separate();
            sb.Append(value ? "true" : "false");
            needComma = true;
            return this;
        }

        public AitbJsonWriter Null()
        {
            Separate();
            sb.Append("null");
            needComma = true;
            return this;
        }

        /// <summary>A price that may be missing: NaN is written as null.</summary>
        public AitbJsonWriter ValueOrNull(double value)
        {
            return double.IsNaN(value) ? Null() : Value(value);
        }

        public AitbJsonWriter Prop(string name, string value) { return Name(name).Value(value); }
        public AitbJsonWriter Prop(string name, double value) { return Name(name).Value(value); }
        public AitbJsonWriter Prop(string name, long value) { return Name(name).Value(value); }
        public AitbJsonWriter Prop(string name, bool value) { return Name(name).Value(value); }

        public override string ToString() { return sb.ToString(); }

        private void Separate()
        {
            if (needComma) sb.Append(',');
        }

        /// <summary>Shortest text that parses back to exactly <paramref name="value"/>.</summary>
        public static string FormatNumber(double value)
        {
            if (double.IsNaN(value) || double.IsInfinity(value))
                throw new ArgumentException("JSON has no NaN or Infinity; refusing to send " + value.ToString(CultureInfo.InvariantCulture));
            if (value == 0 && double.IsNegativeInfinity(1 / value)) return "-0.0"; // "R" drops the sign
            string text = value.ToString("R", CultureInfo.InvariantCulture);
            // "R" is known not to round-trip a few values on .NET Framework; G17 always does.
            if (double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture) != value)
                text = value.ToString("G17", CultureInfo.InvariantCulture);
            return text;
        }

        /// <summary>ISO-8601: a UTC time (DateTimeKind.Utc) ends in Z; any other kind is
        /// written without an offset (protocol v1: naive times are exchange-local).</summary>
        public static string FormatTime(DateTime time)
        {
            if (time.Kind == DateTimeKind.Utc) return FormatNaive(time) + "Z";
            return FormatNaive(time);
        }

        private static string FormatNaive(DateTime time)
        {
            string text = time.ToString("yyyy'-'MM'-'dd'T'HH':'mm':'ss", CultureInfo.InvariantCulture);
            if (time.Millisecond != 0)
                text += "." + time.ToString("fff", CultureInfo.InvariantCulture);
            return text;
        }

        public static void AppendString(StringBuilder sb, string value)
        {
            sb.Append('"');
            for (int i = 0; i < value.Length; i++)
            {
                char c = value[i];
                switch (c)
                {
                    case '"': sb.Append("\\\""); break;
                    case '\\': sb.Append("\\\\"); break;
                    case '\b': sb.Append("\\b"); break;
                    case '\f': sb.Append("\\f"); break;
                    case '\n': sb.Append("\\n"); break;
                    case '\r': sb.Append("\\r"); break;
                    case '\t': sb.Append("\\t"); break;
                    default:
                        if (c < 0x20 || c > 0x7E)
                            sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                        else
                            sb.Append(c);
                        break;
                }
            }
            sb.Append('"');
        }
    }

    /// <summary>Raised for text that is not valid JSON (RFC 8259).</summary>
    public sealed class AitbJsonException : FormatException
    {
        public AitbJsonException(string message) : base(message) { }
    }

    /// <summary>
    /// Strict JSON reader. Objects become Dictionary&lt;string, object&gt;, arrays
    /// List&lt;object&gt;, numbers double, strings string, true/false bool, null null.
    /// Nesting is limited so hostile input cannot exhaust the stack.
    /// </summary>
    public sealed class AitbJsonReader
    {
        public const int MaxDepth = 64;
        private readonly string text;
        private int pos;

        private AitbJsonReader(string text)
        {
            this.text = text;
        }

        public static object Parse(string text)
        {
            if (text == null) throw new AitbJsonException("no text");
            AitbJsonReader reader = new AitbJsonReader(text);
            reader.SkipWhitespace();
            object value = reader.ReadValue(0);
            reader.SkipWhitespace();
            if (reader.pos != text.Length) throw reader.Error("unexpected text after the value");
            return value;
        }

        private AitbJsonException Error(string what)
        {
            return new AitbJsonException(string.Format(CultureInfo.InvariantCulture, "invalid JSON at offset {0}: {1}", pos, what));
        }

        private void SkipWhitespace()
        {
            while (pos < text.Length)
            {
                char c = text[pos];
                if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
                pos++;
            }
        }

        private object ReadValue(int depth)
        {
            if (depth > MaxDepth) throw Error("nested too deeply");
            if (pos >= text.Length) throw Error("unexpected end");
            char c = text[pos];
            switch (c)
            {
                case '{': return ReadObject(depth + 1);
                case '[': return ReadArray(depth + 1);
                case '"': return ReadString();
                case 't': ReadLiteral("true"); return true;
                case 'f': ReadLiteral("false"); return false;
                case 'n': ReadLiteral("null"); return null;
                default:
                    if (c == '-' || (c >= '0' && c <= '9')) return ReadNumber();
                    throw Error("unexpected character '" + c + "'");
            }
        }

        private void ReadLiteral(string literal)
        {
            if (string.CompareOrdinal(text, pos, literal, 0, literal.Length) != 0) throw Error("expected " + literal);
            pos += literal.Length;
        }

        private Dictionary<string, object> ReadObject(int depth)
        {
            Dictionary<string, object> result = new Dictionary<string, object>(StringComparer.Ordinal);
            pos++; // '{'
            SkipWhitespace();
            if (pos < text.Length && text[pos] == '}') { pos++; return result; }
            while (true)
            {
                SkipWhitespace();
                if (pos >= text.Length || text[pos] != '"') throw Error("expected a member name");
                string name = ReadString();
                SkipWhitespace();
                if (pos >= text.Length || text[pos] != ':') throw Error("expected ':'");
                pos++;
                SkipWhitespace();
                result[name] = ReadValue(depth);
                SkipWhitespace();
                if (pos >= text.Length) throw Error("unterminated object");
                if (text[pos] == ',') { pos++; continue; }
                if (text[pos] == '}') { pos++; return result; }
                throw Error("expected ',' or '}'");
            }
        }

        private List<object> ReadArray(int depth)
        {
            List<object> result = new List<object>();
            pos++; // '['
            SkipWhitespace();
            if (pos < text.Length && text[pos] == ']') { pos++; return result; }
            while (true)
            {
                SkipWhitespace();
                result.Add(ReadValue(depth));
                SkipWhitespace();
                if (pos >= text.Length) throw Error("unterminated array");
                if (text[pos] == ',') { pos++; continue; }
                if (text[pos] == ']') { pos++; return result; }
                throw Error("expected ',' or ']'");
            }
        }

        private string ReadString()
        {
            pos++; // opening quote
            StringBuilder sb = null;
            int runStart = pos;
            while (true)
            {
                if (pos >= text.Length) throw Error("unterminated string");
                char c = text[pos];
                if (c == '"')
                {
                    string tail = text.Substring(runStart, pos - runStart);
                    pos++;
                    if (sb == null) return tail;
                    sb.Append(tail);
                    return sb.ToString();
                }
                if (c < 0x20) throw Error("control character in string");
                if (c != '\\') { pos++; continue; }
                if (sb == null) sb = new StringBuilder();
                sb.Append(text, runStart, pos - runStart);
                pos++;
                if (pos >= text.Length) throw Error("unterminated escape");
                char e = text[pos++];
                switch (e)
                {
                    case '"': sb.Append('"'); break;
                    case '\\': sb.Append('\\'); break;
                    case '/': sb.Append('/'); break;
                    case 'b': sb.Append('\b'); break;
                    case 'f': sb.Append('\f'); break;
                    case 'n': sb.Append('\n'); break;
                    case 'r': sb.Append('\r'); break;
                    case 't': sb.Append('\t'); break;
                    case 'u': sb.Append(ReadHex4()); break;
                    default: throw Error("bad escape \\" + e);
                }
                runStart = pos;
            }
        }

        private char ReadHex4()
        {
            if (pos + 4 > text.Length) throw Error("short \\u escape");
            int code = 0;
            for (int i = 0; i < 4; i++)
            {
                char h = text[pos++];
                int digit;
                if (h >= '0' && h <= '9') digit = h - '0';
                else if (h >= 'a' && h <= 'f') digit = h - 'a' + 10;
                else if (h >= 'A' && h <= 'F') digit = h - 'A' + 10;
                else throw Error("bad hex digit in \\u escape");
                code = code * 16 + digit;
            }
            // Surrogate pairs need no special handling: C# strings are UTF-16 as well.
            return (char)code;
        }

        private double ReadNumber()
        {
            int start = pos;
            if (text[pos] == '-') pos++;
            if (pos >= text.Length) throw Error("bad number");
            if (text[pos] == '0') pos++;
            else if (text[pos] >= '1' && text[pos] <= '9') SkipDigits();
            else throw Error("bad number");
            if (pos < text.Length && text[pos] == '.')
            {
                pos++;
                if (pos >= text.Length || !IsDigit(text[pos])) throw Error("bad fraction");
                SkipDigits();
            }
            if (pos < text.Length && (text[pos] == 'e' || text[pos] == 'E'))
            {
                pos++;
                if (pos < text.Length && (text[pos] == '+' || text[pos] == '-')) pos++;
                if (pos >= text.Length || !IsDigit(text[pos])) throw Error("bad exponent");
                SkipDigits();
            }
            double value;
            if (!double.TryParse(text.Substring(start, pos - start), NumberStyles.Float, CultureInfo.InvariantCulture, out value)
                || double.IsInfinity(value))
                throw Error("number out of range");
            if (value == 0 && text[start] == '-') value = -value; // .NET Framework parses "-0.0" as +0
            return value;
        }

        private void SkipDigits()
        {
            while (pos < text.Length && IsDigit(text[pos])) pos++;
        }

        private static bool IsDigit(char c)
        {
            return c >= '0' && c <= '9';
        }
    }

    /// <summary>Typed, forgiving access to parsed JSON (missing or mistyped reads as absent).</summary>
    public static class AitbJson
    {
        public static Dictionary<string, object> Obj(Dictionary<string, object> parent, string key)
        {
            object value;
            if (parent == null || !parent.TryGetValue(key, out value)) return null;
            return value as Dictionary<string, object>;
        }

        public static List<object> Arr(Dictionary<string, object> parent, string key)
        {
            object value;
            if (parent == null || !parent.TryGetValue(key, out value)) return null;
            return value as List<object>;
        }

        public static string Str(Dictionary<string, object> parent, string key)
        {
            object value;
            if (parent == null || !parent.TryGetValue(key, out value)) return null;
            return value as string;
        }

        /// <summary>The number at <paramref name="key"/>, or NaN.</summary>
        public static double Num(Dictionary<string, object> parent, string key)
        {
            object value;
            if (parent == null || !parent.TryGetValue(key, out value) || !(value is double)) return double.NaN;
            return (double)value;
        }

        public static bool Bool(Dictionary<string, object> parent, string key, bool fallback)
        {
            object value;
            if (parent == null || !parent.TryGetValue(key, out value) || !(value is bool)) return fallback;
            return (bool)value;
        }

        public static bool Has(Dictionary<string, object> parent, string key)
        {
            return parent != null && parent.ContainsKey(key);
        }
    }
}
