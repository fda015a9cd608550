// AITradingBridge.cs -- NinjaTrader 8 strategy that trades the decisions of an
// ai-trading-bridge daemon (`ai-trading-bridge serve`).
//
// One file, no third-party DLL: the ZeroMQ client (ZMTP 3.0, REQ socket, NULL security)
// and the JSON reader/writer are implemented below on System.Net.Sockets, so nothing has
// to be copied into bin\Custom and no reference has to be added in the NinjaScript Editor.
//
// Layout (everything in namespace NinjaTrader.NinjaScript.Strategies, class names start
// with "Aitb" because every NinjaScript file is compiled into one assembly):
//   AitbDeadline, AitbJsonWriter, AitbJsonReader, AitbJson  - JSON without a DLL
//   AitbZmtpConnection, AitbReqTransport                    - ZMTP 3.0 REQ over TCP
//   AitbBar, AitbPosition, AitbDecision, AitbProtocol       - wire protocol v1 messages
//   AitbSession                                             - Lazy Pirate + resync
//   AitbWorker                                              - background thread
//   AitbTrail, AitbGuard                                    - pure trading rules
//   AITradingBridge                                         - the NinjaScript Strategy
// Only AITradingBridge touches NinjaTrader types; the rest compiles anywhere (the test
// harness compiles this same file with -define:AITB_HARNESS, which leaves the strategy
// class out). The code stays at C# 5 level so NinjaTrader's compiler accepts it.
//
// Protocol: docs/protocol.md in the ai-trading-bridge repository; ninjatrader/README.md
// explains installation, every parameter and what happens when the daemon is down.

#region Using declarations
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Threading;
#if !AITB_HARNESS
using System.ComponentModel;
using System.ComponentModel.DataAnnotations;
using System.IO;
using System.Xml.Serialization;
using NinjaTrader.Cbi;
using NinjaTrader.Data;
using NinjaTrader.NinjaScript;
#endif
#endregion

namespace NinjaTrader.NinjaScript.Strategies
{
    /// <summary>A point in time on the monotonic clock; every network wait is bounded by one.</summary>
    public struct AitbDeadline
    {
        private readonly long endTimestamp;

        public AitbDeadline(int milliseconds)
        {
            endTimestamp = Stopwatch.GetTimestamp() + (long)milliseconds * Stopwatch.Frequency / 1000L;
        }

        public int RemainingMs
        {
            get
            {
                long left = (endTimestamp - Stopwatch.GetTimestamp()) * 1000L / Stopwatch.Frequency;
                if (left <= 0) return 0;
                return left > int.MaxValue ? int.MaxValue : (int)left;
            }
        }

        public bool Expired
        {
            get { return Stopwatch.GetTimestamp() >= endTimestamp; }
        }
    }

    // ------------------------------------------------------------------------------------
    // JSON
    // ------------------------------------------------------------------------------------

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

        /// <summary>ISO-8601 without offset (exchange-local, as NinjaTrader stamps bars).</summary>
        public static string FormatTime(DateTime time)
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

    // ------------------------------------------------------------------------------------
    // ZeroMQ: ZMTP 3.0 (rfc.zeromq.org/spec/23), REQ socket, NULL mechanism
    // ------------------------------------------------------------------------------------

    /// <summary>The peer broke ZMTP (bad greeting, bad frame, refused handshake) or closed.</summary>
    public sealed class AitbZmtpException : Exception
    {
        public AitbZmtpException(string message) : base(message) { }
    }

    /// <summary>One TCP connection speaking ZMTP 3.0 as a REQ socket.</summary>
    public sealed class AitbZmtpConnection : IDisposable
    {
        public const byte FlagMore = 0x01;
        public const byte FlagLong = 0x02;
        public const byte FlagCommand = 0x04;
        public const int GreetingSize = 64;
        private const int MaxPollMicroseconds = 1000000000;

        private readonly Socket socket;
        private readonly long maxMessageBytes;
        private readonly byte[] small = new byte[8];

        private AitbZmtpConnection(Socket socket, long maxMessageBytes)
        {
            this.socket = socket;
            this.maxMessageBytes = maxMessageBytes;
        }

        /// <summary>Connects and completes the ZMTP handshake before <paramref name="deadline"/>.</summary>
        /// <exception cref="SocketException">TCP connect failed (refused, unreachable).</exception>
        /// <exception cref="TimeoutException">The deadline passed.</exception>
        /// <exception cref="AitbZmtpException">The peer is not a ZMTP 3 REP/ROUTER socket.</exception>
        public static AitbZmtpConnection Open(IPEndPoint endpoint, AitbDeadline deadline, long maxMessageBytes)
        {
            Socket socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            AitbZmtpConnection connection = new AitbZmtpConnection(socket, maxMessageBytes);
            try
            {
                socket.NoDelay = true;
                IAsyncResult pending = socket.BeginConnect(endpoint, null, null);
                if (!pending.AsyncWaitHandle.WaitOne(deadline.RemainingMs))
                    throw new TimeoutException("TCP connect timed out");
                socket.EndConnect(pending);
                connection.Handshake(deadline);
                return connection;
            }
            catch
            {
                connection.Dispose();
                throw;
            }
        }

        /// <summary>Our 64-byte greeting: signature, version 3.0, mechanism NULL, as-server 0.</summary>
        public static byte[] BuildGreeting()
        {
            byte[] greeting = new byte[GreetingSize];
            greeting[0] = 0xFF;
            greeting[9] = 0x7F;
            greeting[10] = 3;
            greeting[11] = 0;
            byte[] mechanism = Encoding.ASCII.GetBytes("NULL");
            Buffer.BlockCopy(mechanism, 0, greeting, 12, mechanism.Length);
            greeting[32] = 0; // as-server: we are the client
            return greeting;
        }

        /// <summary>READY command body with the given properties (name, value) pairs.</summary>
        public static byte[] BuildReadyCommand(string socketType)
        {
            List<byte> body = new List<byte>();
            AppendShortString(body, "READY");
            AppendShortString(body, "Socket-Type");
            byte[] value = Encoding.ASCII.GetBytes(socketType);
            body.Add(0); body.Add(0); body.Add(0); body.Add((byte)value.Length);
            body.AddRange(value);
            return body.ToArray();
        }

        private static void AppendShortString(List<byte> target, string text)
        {
            byte[] bytes = Encoding.ASCII.GetBytes(text);
            target.Add((byte)bytes.Length);
            target.AddRange(bytes);
        }

        private void Handshake(AitbDeadline deadline)
        {
            SendAll(BuildGreeting(), deadline);
            byte[] peer = new byte[GreetingSize];
            ReadExact(peer, 0, 10, deadline);
            if (peer[0] != 0xFF || peer[9] != 0x7F)
                throw new AitbZmtpException("the peer is not a ZeroMQ socket (bad greeting signature)");
            ReadExact(peer, 10, GreetingSize - 10, deadline);
            if (peer[10] < 3)
                throw new AitbZmtpException("the peer speaks ZMTP " + peer[10] + ".x; version 3 is required");
            string mechanism = Encoding.ASCII.GetString(peer, 12, 20).TrimEnd('\0');
            if (mechanism != "NULL")
                throw new AitbZmtpException("the peer wants security mechanism '" + Sanitize(mechanism) + "'; only NULL is supported");

            SendFrame(FlagCommand, BuildReadyCommand("REQ"), deadline);
            byte flags;
            byte[] command = ReadFrame(deadline, out flags);
            if ((flags & FlagCommand) == 0)
                throw new AitbZmtpException("expected the peer's READY command, got a message frame");
            string name;
            int offset = CommandName(command, out name);
            if (name == "ERROR")
                throw new AitbZmtpException("the peer refused the connection: " + ErrorReason(command, offset));
            if (name != "READY")
                throw new AitbZmtpException("expected READY, got command '" + Sanitize(name) + "'");
            string peerType = ReadyProperty(command, offset, "Socket-Type");
            if (peerType != "REP" && peerType != "ROUTER")
                throw new AitbZmtpException("the peer is a " + Sanitize(peerType ?? "(unknown)") + " socket; a REQ socket needs REP or ROUTER");
        }

        private static string Sanitize(string text)
        {
            StringBuilder sb = new StringBuilder();
            foreach (char c in text)
                sb.Append(c >= 0x20 && c < 0x7F ? c : '?');
            return sb.ToString();
        }

        private static int CommandName(byte[] command, out string name)
        {
            if (command.Length < 1 || command[0] + 1 > command.Length)
                throw new AitbZmtpException("malformed command frame");
            name = Encoding.ASCII.GetString(command, 1, command[0]);
            return 1 + command[0];
        }

        private static string ErrorReason(byte[] command, int offset)
        {
            if (offset >= command.Length) return "(no reason)";
            int length = Math.Min(command[offset], command.Length - offset - 1);
            return Sanitize(Encoding.ASCII.GetString(command, offset + 1, length));
        }

        /// <summary>Value of a READY metadata property (names compare case-insensitively).</summary>
        private static string ReadyProperty(byte[] command, int offset, string wanted)
        {
            while (offset < command.Length)
            {
                int nameLength = command[offset];
                if (offset + 1 + nameLength + 4 > command.Length) throw new AitbZmtpException("malformed READY metadata");
                string name = Encoding.ASCII.GetString(command, offset + 1, nameLength);
                offset += 1 + nameLength;
                long valueLength = ((long)command[offset] << 24) | ((long)command[offset + 1] << 16)
                    | ((long)command[offset + 2] << 8) | command[offset + 3];
                offset += 4;
                if (offset + valueLength > command.Length) throw new AitbZmtpException("malformed READY metadata");
                if (string.Equals(name, wanted, StringComparison.OrdinalIgnoreCase))
                    return Encoding.ASCII.GetString(command, offset, (int)valueLength);
                offset += (int)valueLength;
            }
            return null;
        }

        /// <summary>Sends one request: the empty delimiter frame (MORE) then the body frame.</summary>
        public void SendRequest(byte[] body, AitbDeadline deadline)
        {
            SendFrame(FlagMore, new byte[0], deadline);
            SendFrame(0, body, deadline);
        }

        /// <summary>Receives one reply: the empty delimiter frame, then exactly one body frame.</summary>
        public byte[] ReceiveReply(AitbDeadline deadline)
        {
            bool delimiterSeen = false;
            while (true)
            {
                byte flags;
                byte[] frame = ReadFrame(deadline, out flags);
                if ((flags & FlagCommand) != 0)
                {
                    HandleCommand(frame, deadline);
                    continue;
                }
                if (!delimiterSeen)
                {
                    if (frame.Length != 0 || (flags & FlagMore) == 0)
                        throw new AitbZmtpException("the reply does not start with the empty delimiter frame");
                    delimiterSeen = true;
                    continue;
                }
                if ((flags & FlagMore) != 0)
                    throw new AitbZmtpException("the reply has more than one body frame");
                return frame;
            }
        }

        /// <summary>ZMTP 3.1 heartbeats: answer PING with PONG; ignore other commands.</summary>
        private void HandleCommand(byte[] command, AitbDeadline deadline)
        {
            string name;
            int offset = CommandName(command, out name);
            if (name == "ERROR")
                throw new AitbZmtpException("the peer sent ERROR: " + ErrorReason(command, offset));
            if (name == "PING" && command.Length >= offset + 2)
            {
                List<byte> pong = new List<byte>();
                AppendShortString(pong, "PONG");
                for (int i = offset + 2; i < command.Length; i++) pong.Add(command[i]);
                SendFrame(FlagCommand, pong.ToArray(), deadline);
            }
        }

        private void SendFrame(byte flags, byte[] body, AitbDeadline deadline)
        {
            byte[] frame;
            if (body.Length <= 255)
            {
                frame = new byte[2 + body.Length];
                frame[0] = flags;
                frame[1] = (byte)body.Length;
                Buffer.BlockCopy(body, 0, frame, 2, body.Length);
            }
            else
            {
                frame = new byte[9 + body.Length];
                frame[0] = (byte)(flags | FlagLong);
                long size = body.Length;
                for (int i = 0; i < 8; i++) frame[1 + i] = (byte)(size >> (56 - 8 * i));
                Buffer.BlockCopy(body, 0, frame, 9, body.Length);
            }
            SendAll(frame, deadline);
        }

        private byte[] ReadFrame(AitbDeadline deadline, out byte flags)
        {
            ReadExact(small, 0, 1, deadline);
            flags = small[0];
            if ((flags & ~(FlagMore | FlagLong | FlagCommand)) != 0)
                throw new AitbZmtpException(string.Format(CultureInfo.InvariantCulture, "bad frame flags 0x{0:x2}", flags));
            long size;
            if ((flags & FlagLong) != 0)
            {
                ReadExact(small, 0, 8, deadline);
                size = 0;
                for (int i = 0; i < 8; i++) size = (size << 8) | small[i];
            }
            else
            {
                ReadExact(small, 0, 1, deadline);
                size = small[0];
            }
            if (size < 0 || size > maxMessageBytes)
                throw new AitbZmtpException(string.Format(CultureInfo.InvariantCulture, "frame of {0} bytes exceeds the {1}-byte limit", size, maxMessageBytes));
            byte[] body = new byte[size];
            ReadExact(body, 0, body.Length, deadline);
            return body;
        }

        private void SendAll(byte[] data, AitbDeadline deadline)
        {
            int sent = 0;
            while (sent < data.Length)
            {
                int remaining = deadline.RemainingMs;
                if (remaining <= 0 || !socket.Poll(Math.Min(remaining, MaxPollMicroseconds / 1000) * 1000, SelectMode.SelectWrite))
                    throw new TimeoutException("send timed out");
                sent += socket.Send(data, sent, data.Length - sent, SocketFlags.None);
            }
        }

        private void ReadExact(byte[] buffer, int offset, int count, AitbDeadline deadline)
        {
            while (count > 0)
            {
                int remaining = deadline.RemainingMs;
                if (remaining <= 0 || !socket.Poll(Math.Min(remaining, MaxPollMicroseconds / 1000) * 1000, SelectMode.SelectRead))
                    throw new TimeoutException("no reply within the timeout");
                int read = socket.Receive(buffer, offset, count, SocketFlags.None);
                if (read <= 0) throw new AitbZmtpException("the peer closed the connection");
                offset += read;
                count -= read;
            }
        }

        /// <summary>Closes at once (linger 0): nothing queued is sent after we give up.</summary>
        public void Dispose()
        {
            try { socket.LingerState = new LingerOption(true, 0); } catch (Exception) { }
            try { socket.Close(); } catch (Exception) { }
        }
    }

    /// <summary>
    /// A REQ socket for one endpoint that connects lazily and is thrown away after any
    /// failure, so every retry starts on a fresh connection (ZeroMQ Guide, Lazy Pirate).
    /// </summary>
    public sealed class AitbReqTransport : IDisposable
    {
        private const int ConnectRetryMs = 100;
        private static readonly Encoding StrictUtf8 = new UTF8Encoding(false, true);
        private readonly string host;
        private readonly int port;
        private readonly long maxMessageBytes;
        private AitbZmtpConnection connection;
        private volatile bool disposed;

        public AitbReqTransport(string endpoint, long maxMessageBytes)
        {
            ParseEndpoint(endpoint, out host, out port);
            this.maxMessageBytes = maxMessageBytes;
        }

        /// <summary>Connections opened so far (each failure costs one).</summary>
        public int ConnectionsOpened { get; private set; }

        /// <summary>"tcp://host:port" (host may be a name, an IPv4 or a [bracketed] IPv6 address).</summary>
        public static void ParseEndpoint(string endpoint, out string host, out int port)
        {
            const string scheme = "tcp://";
            if (endpoint == null || !endpoint.StartsWith(scheme, StringComparison.OrdinalIgnoreCase))
                throw new ArgumentException("endpoint must look like tcp://127.0.0.1:5555, got '" + endpoint + "'");
            string rest = endpoint.Substring(scheme.Length);
            int colon = rest.LastIndexOf(':');
            if (colon <= 0 || !int.TryParse(rest.Substring(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out port)
                || port < 1 || port > 65535)
                throw new ArgumentException("endpoint needs a port between 1 and 65535, e.g. tcp://127.0.0.1:5555; got '" + endpoint + "'");
            host = rest.Substring(0, colon);
            if (host.StartsWith("[") && host.EndsWith("]")) host = host.Substring(1, host.Length - 2);
            if (host.Length == 0 || host == "*")
                throw new ArgumentException("endpoint needs the daemon's address (tcp://*:port is for binding); got '" + endpoint + "'");
        }

        /// <summary>
        /// One request/reply within <paramref name="timeoutMs"/>. Connection refusals are
        /// retried inside that time (as a ZeroMQ socket reconnects in the background); any
        /// other failure ends the try. On failure the connection is closed.
        /// </summary>
        public bool TryExchange(string request, int timeoutMs, out string reply, out string failure)
        {
            AitbDeadline deadline = new AitbDeadline(timeoutMs);
            reply = null;
            failure = null;
            if (disposed)
            {
                failure = "the connection was shut down";
                return false;
            }
            try
            {
                if (connection == null) connection = Connect(deadline);
                connection.SendRequest(StrictUtf8.GetBytes(request), deadline);
                reply = StrictUtf8.GetString(connection.ReceiveReply(deadline));
                return true;
            }
            catch (Exception ex)
            {
                // SocketException, TimeoutException, AitbZmtpException, DecoderFallbackException,
                // ObjectDisposedException (closed by Dispose from another thread): all mean
                // "this try failed"; nothing the peer sends may escape as a crash or a hang.
                failure = ex.Message;
                Close();
                return false;
            }
        }

        private AitbZmtpConnection Connect(AitbDeadline deadline)
        {
            while (true)
            {
                if (disposed) throw new ObjectDisposedException("AitbReqTransport");
                try
                {
                    ConnectionsOpened++;
                    return AitbZmtpConnection.Open(Resolve(), deadline, maxMessageBytes);
                }
                catch (SocketException ex)
                {
                    if (ex.SocketErrorCode != SocketError.ConnectionRefused || deadline.RemainingMs <= ConnectRetryMs)
                        throw;
                    Thread.Sleep(ConnectRetryMs);
                }
            }
        }

        private IPEndPoint Resolve()
        {
            IPAddress address;
            if (IPAddress.TryParse(host, out address)) return new IPEndPoint(address, port);
            IPAddress[] addresses = Dns.GetHostAddresses(host);
            foreach (IPAddress candidate in addresses)
                if (candidate.AddressFamily == AddressFamily.InterNetwork) return new IPEndPoint(candidate, port);
            if (addresses.Length == 0) throw new SocketException((int)SocketError.HostNotFound);
            return new IPEndPoint(addresses[0], port);
        }

        public void Close()
        {
            AitbZmtpConnection current = connection;
            connection = null;
            if (current != null) current.Dispose();
        }

        /// <summary>Closes the connection for good; later exchanges fail at once.</summary>
        public void Dispose()
        {
            disposed = true;
            Close();
        }
    }

    // ------------------------------------------------------------------------------------
    // Protocol v1 messages
    // ------------------------------------------------------------------------------------

    /// <summary>A closed bar; <see cref="Time"/> is its close time, as NinjaTrader stamps it.</summary>
    public sealed class AitbBar
    {
        public DateTime Time;
        public double Open, High, Low, Close, Volume;

        public AitbBar(DateTime time, double open, double high, double low, double close, double volume)
        {
            Time = time; Open = open; High = high; Low = low; Close = close; Volume = volume;
        }

        /// <summary>Why the daemon would refuse this bar, or null when it is valid.</summary>
        public string Problem()
        {
            double[] prices = { Open, High, Low, Close };
            foreach (double p in prices)
                if (double.IsNaN(p) || double.IsInfinity(p) || p <= 0) return "prices must be finite and > 0";
            if (Low > Math.Min(Open, Close) || High < Math.Max(Open, Close)) return "high/low do not contain open/close";
            if (double.IsNaN(Volume) || double.IsInfinity(Volume) || Volume < 0) return "volume must be finite and >= 0";
            return null;
        }

        public void Write(AitbJsonWriter w)
        {
            w.BeginObject()
                .Prop("time", AitbJsonWriter.FormatTime(Time))
                .Prop("open", Open).Prop("high", High).Prop("low", Low).Prop("close", Close);
            if (Volume == Math.Floor(Volume) && Volume < 9e15) w.Prop("volume", (long)Volume); else w.Prop("volume", Volume);
            w.EndObject();
        }
    }

    /// <summary>The position as NinjaTrader knows it (the source of truth).</summary>
    public sealed class AitbPosition
    {
        public int Side;               // -1 short, 0 flat, 1 long
        public int Quantity;
        public double EntryPrice = double.NaN;
        public DateTime? EntryTime;    // close time of the bar in which the entry filled
        public double StopPrice = double.NaN;
        public double TargetPrice = double.NaN;
        public bool Trailing;

        public static AitbPosition Flat()
        {
            return new AitbPosition();
        }

        /// <summary>Why the daemon would refuse this position, or null when it is valid.</summary>
        public string Problem()
        {
            if (Side == 0) return null;
            if (Side != 1 && Side != -1) return "side must be -1, 0 or 1";
            if (Quantity <= 0) return "quantity must be > 0 in a position";
            if (!IsFinite(EntryPrice) || !IsFinite(StopPrice) || !IsFinite(TargetPrice)) return "entry, stop and target must be known in a position";
            if (!EntryTime.HasValue) return "entry time must be known in a position";
            return null;
        }

        private static bool IsFinite(double v)
        {
            return !double.IsNaN(v) && !double.IsInfinity(v);
        }

        public void Write(AitbJsonWriter w)
        {
            w.BeginObject().Prop("side", (long)Side).Prop("quantity", (long)(Side == 0 ? 0 : Quantity));
            if (Side == 0)
            {
                w.Name("entry_price").Null().Name("entry_time").Null().Name("sl_price").Null().Name("tp_price").Null();
            }
            else
            {
                w.Name("entry_price").ValueOrNull(EntryPrice);
                w.Name("entry_time").Value(EntryTime.HasValue ? AitbJsonWriter.FormatTime(EntryTime.Value) : null);
                w.Name("sl_price").ValueOrNull(StopPrice);
                w.Name("tp_price").ValueOrNull(TargetPrice);
            }
            w.Prop("trailing", Side != 0 && Trailing).EndObject();
        }

        public AitbPosition Copy()
        {
            return (AitbPosition)MemberwiseClone();
        }
    }

    /// <summary>Builds protocol v1 requests.</summary>
    public static class AitbProtocol
    {
        public const int Version = 1;
        public static readonly string[] ActionNames = { "HOLD", "BUY", "SELL", "MOVE_TO_BE", "ENABLE_TRAIL", "DISABLE_TRAIL" };
        public const int Hold = 0, Buy = 1, Sell = 2, MoveToBreakeven = 3, EnableTrail = 4, DisableTrail = 5;

        private static AitbJsonWriter Envelope(string type, string client, string instrument)
        {
            AitbJsonWriter w = new AitbJsonWriter();
            w.BeginObject().Prop("v", (long)Version).Prop("type", type);
            if (client != null) w.Prop("client", client);
            if (instrument != null) w.Prop("instrument", instrument);
            return w;
        }

        // hello, history and ping carry no seq: seq numbers only the bar and position
        // requests, so a resync between a timeout and its retry never disturbs the
        // daemon's "same client + seq gets the cached reply" rule.
        public static string Hello(string client, string instrument)
        {
            return Envelope("hello", client, instrument).EndObject().ToString();
        }

        public static string History(string client, string instrument, IList<AitbBar> bars, int start, int count)
        {
            AitbJsonWriter w = Envelope("history", client, instrument);
            w.Name("bars").BeginArray();
            for (int i = start; i < start + count; i++) bars[i].Write(w);
            return w.EndArray().EndObject().ToString();
        }

        public static string Bar(string client, string instrument, long seq, AitbBar bar, AitbPosition position)
        {
            AitbJsonWriter w = Envelope("bar", client, instrument);
            w.Prop("seq", seq).Name("bar");
            bar.Write(w);
            w.Name("position");
            position.Write(w);
            return w.EndObject().ToString();
        }

        public static string Position(string client, string instrument, long seq, AitbPosition position)
        {
            AitbJsonWriter w = Envelope("position", client, instrument);
            w.Prop("seq", seq).Name("position");
            position.Write(w);
            return w.EndObject().ToString();
        }

        public static string Ping()
        {
            return Envelope("ping", null, null).EndObject().ToString();
        }
    }

    /// <summary>What the daemon decided for one bar, or why the client acts as HOLD.</summary>
    public sealed class AitbDecision
    {
        public const string OutcomeOk = "ok";
        public const string OutcomeUnreachable = "unreachable"; // no reply after all tries
        public const string OutcomeError = "error";             // the daemon replied ok=false
        public const string OutcomeInvalid = "invalid";         // a reply we must not act on

        public long Seq;
        public DateTime BarTime;
        public string Outcome = OutcomeUnreachable;
        public int Action;                 // what to do: HOLD unless Outcome is ok
        public string Name = "HOLD";
        public int[] Mask;
        public bool WarmingUp;
        public string ModelVersion;
        public double StopPrice = double.NaN;
        public double TargetPrice = double.NaN;
        public double TrailPoints = double.NaN;
        public string ErrorCode;
        public string Message;             // error message or why the reply was refused
        public int Attempts;
        public bool Resynced;              // hello + history were re-sent during this request
        public double LatencyMs;
        public string RawReply;

        public bool IsOk { get { return Outcome == OutcomeOk; } }
    }

    // ------------------------------------------------------------------------------------
    // Session: Lazy Pirate + resynchronisation after a daemon restart
    // ------------------------------------------------------------------------------------

    public sealed class AitbSessionOptions
    {
        public string Endpoint = "tcp://127.0.0.1:5555";
        public string Client = "nt8";
        public string Instrument = "";
        public int TimeoutMs = 2000;
        public int Tries = 3;
        public int HistoryChunk = 500;     // bars per history message
        public int HistoryKeep = 1000;     // bars kept to rebuild a restarted daemon
        public long MaxMessageBytes = 16L * 1024 * 1024;
        public long FirstSeq = 0;          // 0: derived from the clock (see AitbSession)
    }

    /// <summary>
    /// The protocol state machine. Not thread-safe: one thread (AitbWorker's) drives it.
    ///
    /// Lazy Pirate: each request is tried up to Tries times, each try waiting at most
    /// TimeoutMs for the reply on a fresh connection; the retried request is the same
    /// text with the same seq, so a daemon that already answered it replies from its
    /// cache without running the model again. After all tries the caller acts as HOLD.
    ///
    /// Resync: after any failed try the next try first sends a ping. A daemon whose
    /// uptime_s is shorter than the time since its last reply to us has restarted and
    /// lost our state, so we send hello and the whole history buffer (oldest first)
    /// before repeating the request. A daemon that did not restart only gets the bars it
    /// may have missed (history after the newest bar it acknowledged; overlap is skipped
    /// by the daemon anyway). hello/history/ping carry no seq, so none of this disturbs
    /// the daemon's retry cache.
    /// </summary>
    public sealed class AitbSession : IDisposable
    {
        private const double RestartToleranceSeconds = 0.05;
        private readonly AitbSessionOptions options;
        private readonly Action<string> log;
        private readonly AitbReqTransport transport;
        private readonly List<AitbBar> history = new List<AitbBar>();
        private long nextSeq;
        private bool everSynced;
        private bool needSync = true;
        private bool forceHello;
        private bool daemonReady;
        private long lastReplyTimestamp;
        private DateTime? lastAcknowledgedBar;
        private string modelSha;

        public AitbSession(AitbSessionOptions options, Action<string> log)
        {
            if (options.Tries < 1) throw new ArgumentException("tries must be >= 1");
            if (options.TimeoutMs < 1) throw new ArgumentException("timeout must be >= 1 ms");
            this.options = options;
            this.log = log ?? delegate(string s) { };
            transport = new AitbReqTransport(options.Endpoint, options.MaxMessageBytes);
            // Seq starts from the clock (ms since 2020) so a restarted strategy never reuses
            // the seq of its previous run and receives that run's cached reply.
            nextSeq = options.FirstSeq > 0 ? options.FirstSeq
                : (long)(DateTime.UtcNow - new DateTime(2020, 1, 1, 0, 0, 0, DateTimeKind.Utc)).TotalMilliseconds;
        }

        public int WarmupBars { get; private set; }
        public string ModelVersion { get; private set; }
        public bool DaemonReady { get { return daemonReady; } }
        public long LastSeq { get { return nextSeq - 1; } }
        public int HelloCount { get; private set; }
        public int HistoryMessages { get; private set; }
        public int ConnectionsOpened { get { return transport.ConnectionsOpened; } }
        public int BufferedBars { get { return history.Count; } }

        /// <summary>The text of the last bar request (diagnostics and tests).</summary>
        public string LastRequest { get; private set; }

        /// <summary>Sends hello and the backfill. False when the daemon could not be reached
        /// (the next request then retries the resync).</summary>
        public bool Start(IList<AitbBar> bars)
        {
            foreach (AitbBar bar in bars) Remember(bar);
            for (int attempt = 1; attempt <= options.Tries; attempt++)
            {
                string failure;
                bool resynced;
                if (Sync(out failure, out resynced)) return true;
                log(string.Format(CultureInfo.InvariantCulture, "connect try {0}/{1} failed: {2}", attempt, options.Tries, failure));
            }
            log("daemon unreachable at " + options.Endpoint + "; will retry with the next bar");
            return false;
        }

        /// <summary>Asks for a decision on a closed bar. Never throws for network reasons.</summary>
        public AitbDecision SendBar(AitbBar bar, AitbPosition position)
        {
            AitbDecision decision = new AitbDecision();
            decision.BarTime = bar.Time;
            string problem = bar.Problem() ?? position.Problem();
            if (problem != null)
            {
                decision.Outcome = AitbDecision.OutcomeInvalid;
                decision.Message = "not sent: " + problem;
                return decision;
            }
            long seq = nextSeq++;
            decision.Seq = seq;
            string request = AitbProtocol.Bar(options.Client, options.Instrument, seq, bar, position);
            LastRequest = request;
            Stopwatch watch = Stopwatch.StartNew();
            Dictionary<string, object> reply = Exchange(request, decision);
            decision.LatencyMs = watch.Elapsed.TotalMilliseconds;
            Remember(bar);
            if (reply == null) return decision;
            Interpret(reply, decision);
            if (decision.IsOk)
            {
                lastAcknowledgedBar = bar.Time;
                if (decision.WarmingUp && daemonReady)
                {
                    // The daemon forgot our history without us noticing a restart: rebuild it.
                    log("daemon reports warming up although it had our history; resending hello and history");
                    needSync = true;
                    forceHello = true;
                }
            }
            return decision;
        }

        /// <summary>Reports a fill or position change between bars (Outcome ok when delivered).</summary>
        public AitbDecision SendPosition(AitbPosition position)
        {
            AitbDecision result = new AitbDecision();
            string problem = position.Problem();
            if (problem != null)
            {
                result.Outcome = AitbDecision.OutcomeInvalid;
                result.Message = "not sent: " + problem;
                return result;
            }
            result.Seq = nextSeq++;
            Dictionary<string, object> reply = Exchange(AitbProtocol.Position(options.Client, options.Instrument, result.Seq, position), result);
            if (reply == null) return result;
            if (AitbJson.Bool(reply, "ok", false))
            {
                result.Outcome = AitbDecision.OutcomeOk;
            }
            else
            {
                result.Outcome = AitbDecision.OutcomeError;
                result.Message = DescribeError(reply);
            }
            return result;
        }

        /// <summary>The request with Lazy Pirate retries; null after the last failed try.</summary>
        private Dictionary<string, object> Exchange(string request, AitbDecision decision)
        {
            for (int attempt = 1; attempt <= options.Tries; attempt++)
            {
                decision.Attempts = attempt;
                string failure;
                if (needSync)
                {
                    bool resynced;
                    if (!Sync(out failure, out resynced))
                    {
                        NoteFailure(decision, attempt, failure);
                        continue;
                    }
                    decision.Resynced |= resynced;
                }
                Dictionary<string, object> reply = ExchangeOnce(request, out failure);
                if (reply != null)
                {
                    decision.RawReply = lastRawReply;
                    return reply;
                }
                NoteFailure(decision, attempt, failure);
            }
            decision.Outcome = AitbDecision.OutcomeUnreachable;
            return null;
        }

        private void NoteFailure(AitbDecision decision, int attempt, string failure)
        {
            needSync = true;
            decision.Message = failure;
            log(string.Format(CultureInfo.InvariantCulture, "seq {0}: try {1}/{2} failed: {3}", decision.Seq, attempt, options.Tries, failure));
        }

        private string lastRawReply;

        /// <summary>One try: a JSON object back, or null with the reason (connection closed).</summary>
        private Dictionary<string, object> ExchangeOnce(string request, out string failure)
        {
            string raw;
            if (!transport.TryExchange(request, options.TimeoutMs, out raw, out failure)) return null;
            Dictionary<string, object> reply = null;
            try { reply = AitbJsonReader.Parse(raw) as Dictionary<string, object>; }
            catch (AitbJsonException ex) { failure = "garbage reply (" + ex.Message + ")"; }
            if (reply == null)
            {
                if (failure == null) failure = "garbage reply (not a JSON object)";
                transport.Close();
                return null;
            }
            lastReplyTimestamp = Stopwatch.GetTimestamp();
            lastRawReply = raw;
            return reply;
        }

        /// <summary>ping, then hello + full history after a restart, or only missed bars.</summary>
        private bool Sync(out string failure, out bool resynced)
        {
            resynced = false;
            bool restarted = !everSynced || forceHello;
            if (!restarted)
            {
                long before = lastReplyTimestamp;
                Dictionary<string, object> pong = ExchangeOnce(AitbProtocol.Ping(), out failure);
                if (pong == null) return false;
                double silentSeconds = (double)(lastReplyTimestamp - before) / Stopwatch.Frequency;
                double uptime = AitbJson.Num(pong, "uptime_s");
                restarted = double.IsNaN(uptime) || uptime + RestartToleranceSeconds < silentSeconds;
                if (restarted)
                    log(string.Format(CultureInfo.InvariantCulture, "daemon restarted (up {0:0.0} s, silent for {1:0.0} s); resending hello and {2} bars of history", uptime, silentSeconds, history.Count));
            }
            if (restarted)
            {
                if (!SendHello(out failure)) return false;
                resynced = true;
            }
            if (!SendHistory(restarted ? (DateTime?)null : lastAcknowledgedBar, out failure)) return false;
            everSynced = true;
            needSync = false;
            forceHello = false;
            failure = null;
            return true;
        }

        private bool SendHello(out string failure)
        {
            Dictionary<string, object> reply = ExchangeOnce(AitbProtocol.Hello(options.Client, options.Instrument), out failure);
            if (reply == null) return false;
            HelloCount++;
            if (!AitbJson.Bool(reply, "ok", false))
            {
                log("hello refused: " + DescribeError(reply));
                return true; // a protocol answer, not a network failure: history may still work
            }
            double warmup = AitbJson.Num(reply, "warmup_bars");
            if (!double.IsNaN(warmup)) WarmupBars = (int)warmup;
            Dictionary<string, object> model = AitbJson.Obj(reply, "model");
            string sha = AitbJson.Str(model, "sha256");
            ModelVersion = AitbJson.Str(model, "version");
            if (modelSha != null && sha != null && sha != modelSha)
                log("the daemon now serves a different model: " + ModelVersion + " (" + sha + ")");
            modelSha = sha;
            daemonReady = false;
            log(string.Format(CultureInfo.InvariantCulture, "hello: model {0}, warmup {1} bars", ModelVersion, WarmupBars));
            return true;
        }

        private bool SendHistory(DateTime? after, out string failure)
        {
            failure = null;
            int start = 0;
            if (after.HasValue)
                while (start < history.Count && history[start].Time <= after.Value) start++;
            int chunk = Math.Max(1, options.HistoryChunk);
            for (int i = start; i < history.Count; i += chunk)
            {
                int count = Math.Min(chunk, history.Count - i);
                Dictionary<string, object> reply = ExchangeOnce(
                    AitbProtocol.History(options.Client, options.Instrument, history, i, count), out failure);
                if (reply == null) return false;
                HistoryMessages++;
                if (!AitbJson.Bool(reply, "ok", false))
                {
                    log("history refused: " + DescribeError(reply));
                    continue;
                }
                daemonReady = AitbJson.Bool(reply, "ready", daemonReady);
                lastAcknowledgedBar = history[i + count - 1].Time;
            }
            return true;
        }

        private void Remember(AitbBar bar)
        {
            if (bar.Problem() != null) return;
            if (history.Count > 0 && bar.Time <= history[history.Count - 1].Time) return;
            history.Add(bar);
            int excess = history.Count - Math.Max(1, options.HistoryKeep);
            if (excess > 0) history.RemoveRange(0, excess);
        }

        private static string DescribeError(Dictionary<string, object> reply)
        {
            Dictionary<string, object> error = AitbJson.Obj(reply, "error");
            return (AitbJson.Str(error, "code") ?? "?") + ": " + (AitbJson.Str(error, "message") ?? "(no message)");
        }

        /// <summary>Checks a bar reply and copies what NinjaTrader needs into the decision.</summary>
        private static void Interpret(Dictionary<string, object> reply, AitbDecision d)
        {
            double echoed = AitbJson.Num(reply, "seq");
            if (!AitbJson.Bool(reply, "ok", false))
            {
                Dictionary<string, object> error = AitbJson.Obj(reply, "error");
                d.Outcome = AitbDecision.OutcomeError;
                d.ErrorCode = AitbJson.Str(error, "code");
                d.Message = AitbJson.Str(error, "message");
                return;
            }
            d.Outcome = AitbDecision.OutcomeInvalid;
            if (echoed != (double)d.Seq) { d.Message = "reply is for another request (seq mismatch)"; return; }
            double action = AitbJson.Num(reply, "action");
            if (!(action >= 0 && action < AitbProtocol.ActionNames.Length && action == Math.Floor(action)))
            {
                d.Message = "action missing or out of range";
                return;
            }
            int a = (int)action;
            List<object> mask = AitbJson.Arr(reply, "mask");
            if (mask == null || mask.Count != AitbProtocol.ActionNames.Length) { d.Message = "mask missing or not 6 values"; return; }
            int[] maskValues = new int[mask.Count];
            for (int i = 0; i < mask.Count; i++)
            {
                if (!(mask[i] is double) || ((double)mask[i] != 0 && (double)mask[i] != 1)) { d.Message = "mask values must be 0 or 1"; return; }
                maskValues[i] = (int)(double)mask[i];
            }
            d.Mask = maskValues;
            if (maskValues[a] != 1) { d.Message = "action " + AitbProtocol.ActionNames[a] + " is not valid under its own mask"; return; }
            string name = AitbJson.Str(reply, "name");
            if (name != null && name != AitbProtocol.ActionNames[a]) { d.Message = "action name does not match its id"; return; }
            d.WarmingUp = AitbJson.Bool(reply, "warming_up", false);
            d.ModelVersion = AitbJson.Str(reply, "model_version");
            Dictionary<string, object> orders = AitbJson.Obj(reply, "orders");
            d.StopPrice = AitbJson.Num(orders, "stop_price");
            d.TargetPrice = AitbJson.Num(orders, "target_price");
            d.TrailPoints = AitbJson.Num(orders, "trail_points");
            bool pricesOk = true;
            if (a == AitbProtocol.Buy || a == AitbProtocol.Sell)
                pricesOk = d.StopPrice > 0 && d.TargetPrice > 0;
            else if (a == AitbProtocol.MoveToBreakeven || a == AitbProtocol.DisableTrail)
                pricesOk = d.StopPrice > 0;
            else if (a == AitbProtocol.EnableTrail)
                pricesOk = d.TrailPoints > 0;
            if (!pricesOk) { d.Message = AitbProtocol.ActionNames[a] + " without the prices it needs in orders"; return; }
            d.Outcome = AitbDecision.OutcomeOk;
            d.Action = a;
            d.Name = AitbProtocol.ActionNames[a];
        }

        public void Dispose()
        {
            transport.Dispose();
        }
    }

    // ------------------------------------------------------------------------------------
    // Worker thread: NinjaTrader's threads never wait for the network
    // ------------------------------------------------------------------------------------

    public sealed class AitbJob
    {
        public const int KindStart = 0, KindBar = 1, KindPosition = 2;
        public int Kind;
        public AitbBar Bar;
        public AitbPosition Position;
        public List<AitbBar> History;
        public int BarIndex;           // NinjaTrader's CurrentBar when the bar closed
        public AitbDecision Decision;  // filled in for bar jobs
    }

    /// <summary>
    /// Owns the session on a background thread. Enqueue* returns at once; bar decisions
    /// come back through the callback on the worker thread (the strategy marshals them
    /// onto its own thread with TriggerCustomEvent). Jobs run strictly in order.
    /// </summary>
    public sealed class AitbWorker : IDisposable
    {
        public const int MaxQueued = 256;
        private readonly AitbSession session;
        private readonly Action<AitbJob> onDecision;
        private readonly Action<string> log;
        private readonly Queue<AitbJob> queue = new Queue<AitbJob>();
        private readonly object gate = new object();
        private readonly Thread thread;
        private bool stopping;

        public AitbWorker(AitbSession session, Action<AitbJob> onDecision, Action<string> log)
        {
            this.session = session;
            this.onDecision = onDecision;
            this.log = log ?? delegate(string s) { };
            thread = new Thread(Run);
            thread.IsBackground = true;
            thread.Name = "AITradingBridge worker";
            thread.Start();
        }

        public int Pending
        {
            get { lock (gate) return queue.Count; }
        }

        public void EnqueueStart(List<AitbBar> history)
        {
            AitbJob job = new AitbJob();
            job.Kind = AitbJob.KindStart;
            job.History = history;
            Enqueue(job);
        }

        public void EnqueueBar(AitbBar bar, AitbPosition position, int barIndex)
        {
            AitbJob job = new AitbJob();
            job.Kind = AitbJob.KindBar;
            job.Bar = bar;
            job.Position = position;
            job.BarIndex = barIndex;
            Enqueue(job);
        }

        public void EnqueuePosition(AitbPosition position)
        {
            AitbJob job = new AitbJob();
            job.Kind = AitbJob.KindPosition;
            job.Position = position;
            Enqueue(job);
        }

        private void Enqueue(AitbJob job)
        {
            lock (gate)
            {
                if (stopping) return;
                if (queue.Count >= MaxQueued)
                {
                    queue.Dequeue();
                    log("request queue full (daemon too slow); dropped the oldest request");
                }
                queue.Enqueue(job);
                Monitor.Pulse(gate);
            }
        }

        private void Run()
        {
            while (true)
            {
                AitbJob job;
                lock (gate)
                {
                    while (queue.Count == 0 && !stopping) Monitor.Wait(gate);
                    if (stopping) return;
                    job = queue.Dequeue();
                }
                try
                {
                    Process(job);
                }
                catch (Exception ex)
                {
                    log("worker error: " + ex.Message);
                }
            }
        }

        private void Process(AitbJob job)
        {
            if (job.Kind == AitbJob.KindStart)
            {
                session.Start(job.History);
            }
            else if (job.Kind == AitbJob.KindBar)
            {
                job.Decision = session.SendBar(job.Bar, job.Position);
                if (onDecision != null) onDecision(job);
            }
            else
            {
                AitbDecision result = session.SendPosition(job.Position);
                if (!result.IsOk) log("position update not delivered (" + result.Outcome + "): " + result.Message);
            }
        }

        /// <summary>Stops without waiting longer than <paramref name="waitMs"/>; closes the socket.</summary>
        public void Stop(int waitMs)
        {
            lock (gate)
            {
                stopping = true;
                queue.Clear();
                Monitor.PulseAll(gate);
            }
            thread.Join(waitMs);
            // Closing the socket also breaks a wait still in progress; the thread then exits.
            session.Dispose();
        }

        public void Dispose()
        {
            Stop(0);
        }
    }

    // ------------------------------------------------------------------------------------
    // Trading rules shared by the strategy and the test harness
    // ------------------------------------------------------------------------------------

    /// <summary>
    /// Trailing stop, identical to env/execution.py trailed_stop: the stop follows the best
    /// price since trailing was enabled at trail_points distance (floored to a tick for a
    /// long, ceiled for a short), never moves against the position and never sits closer
    /// than one tick beyond the last close.
    /// </summary>
    public static class AitbTrail
    {
        private const double TickEpsilon = 1e-9;

        public static double FloorToTick(double price, double tick)
        {
            return Math.Floor(price / tick + TickEpsilon) * tick;
        }

        public static double CeilToTick(double price, double tick)
        {
            return Math.Ceiling(price / tick - TickEpsilon) * tick;
        }

        public static double NextStop(int side, double stopPrice, double bestPrice, double trailPoints, double lastClose, double tick)
        {
            if (side > 0)
            {
                double candidate = Math.Min(FloorToTick(bestPrice - trailPoints, tick), FloorToTick(lastClose - tick, tick));
                return Math.Max(stopPrice, candidate);
            }
            else
            {
                double candidate = Math.Max(CeilToTick(bestPrice + trailPoints, tick), CeilToTick(lastClose + tick, tick));
                return Math.Min(stopPrice, candidate);
            }
        }
    }

    /// <summary>Client-side checks before a decision is executed.</summary>
    public static class AitbGuard
    {
        /// <summary>Why <paramref name="d"/> must not be executed now, or null to execute it.</summary>
        public static string Refusal(AitbDecision d, int side, bool entryPending, double lastClose, double currentStop)
        {
            if (!d.IsOk || d.Action == AitbProtocol.Hold) return null;
            if (d.WarmingUp) return "daemon still warming up";
            if (d.Action == AitbProtocol.Buy || d.Action == AitbProtocol.Sell)
            {
                if (side != 0 || entryPending) return "entry while already in a position (guarded)";
                if (d.Action == AitbProtocol.Buy && !(d.StopPrice < lastClose && lastClose < d.TargetPrice))
                    return "BUY bracket does not straddle the last close";
                if (d.Action == AitbProtocol.Sell && !(d.TargetPrice < lastClose && lastClose < d.StopPrice))
                    return "SELL bracket does not straddle the last close";
                return null;
            }
            if (side == 0) return d.Name + " while flat (nothing to manage)";
            if (d.Action == AitbProtocol.MoveToBreakeven)
            {
                if (!IsBeyondClose(side, d.StopPrice, lastClose)) return "breakeven stop is not beyond the last close";
                if (!double.IsNaN(currentStop) && (side > 0 ? d.StopPrice < currentStop : d.StopPrice > currentStop))
                    return "breakeven stop would loosen the working stop";
            }
            return null;
        }

        /// <summary>
        /// The stop to work after MOVE_TO_BE or DISABLE_TRAIL: the proposed stop when it is
        /// beyond the last close and not looser than the current one, else the current one.
        /// </summary>
        public static double SafeStop(int side, double currentStop, double proposed, double lastClose)
        {
            if (!IsBeyondClose(side, proposed, lastClose)) return currentStop;
            if (double.IsNaN(currentStop)) return proposed;
            return side > 0 ? Math.Max(currentStop, proposed) : Math.Min(currentStop, proposed);
        }

        private static bool IsBeyondClose(int side, double stop, double lastClose)
        {
            return side > 0 ? stop < lastClose : stop > lastClose;
        }
    }

#if !AITB_HARNESS
    // ------------------------------------------------------------------------------------
    // The NinjaScript strategy
    // ------------------------------------------------------------------------------------

    /// <summary>
    /// Sends each closed bar and the position to the ai-trading-bridge daemon and executes
    /// its decision. Orders: SetStopLoss/SetProfitTarget in CalculationMode.Price, set
    /// before the market entry, so NinjaTrader submits the OCO bracket the moment the
    /// entry fills and keeps it working whatever happens to the daemon.
    /// </summary>
    public class AITradingBridge : Strategy
    {
        private const string LongSignal = "AITB Long";
        private const string ShortSignal = "AITB Short";

        private AitbWorker worker;
        private string clientId;
        private string decisionLogPath;

        // Order state; touched only on NinjaTrader's strategy thread.
        private string activeSignal;
        private double stopPrice = double.NaN;
        private double targetPrice = double.NaN;
        private bool trailing;
        private double trailPoints;
        private double bestPrice;
        private DateTime? entryTime;
        private bool entryTimeProvisional;
        private bool entryPending;
        private int entryPendingBar;
        private bool outage;

        protected override void OnStateChange()
        {
            if (State == State.SetDefaults)
            {
                Description = @"Trades the decisions of an ai-trading-bridge daemon over ZeroMQ (no DLL needed).";
                Name = "AITradingBridge";
                Calculate = Calculate.OnBarClose;
                EntriesPerDirection = 1;
                EntryHandling = EntryHandling.AllEntries;
                IsExitOnSessionCloseStrategy = true;
                ExitOnSessionCloseSeconds = 30;
                StartBehavior = StartBehavior.WaitUntilFlat;
                RealtimeErrorHandling = RealtimeErrorHandling.StopCancelClose;
                // Not the default Recalculate: this strategy never trades on historical bars,
                // so a recalculation after a connection loss would rebuild a flat position
                // and lose track of a real one. KeepRunning leaves the position and its
                // working stop and target as they are and carries on when data returns.
                ConnectionLossHandling = ConnectionLossHandling.KeepRunning;
                StopTargetHandling = StopTargetHandling.PerEntryExecution;
                BarsRequiredToTrade = 0;
                TraceOrders = false;
                IsInstantiatedOnEachOptimizationIteration = true;

                Endpoint = "tcp://127.0.0.1:5555";
                TimeoutMs = 2000;
                Retries = 3;
                ClientId = "";
                Quantity = 1;
                LogOnly = false;
                HistoryBars = 1000;
                WriteDecisionLog = true;
            }
            else if (State == State.DataLoaded)
            {
                clientId = string.IsNullOrEmpty(ClientId)
                    ? string.Format(CultureInfo.InvariantCulture, "nt8-{0}-{1}{2}", Instrument.MasterInstrument.Name, BarsPeriod.Value, BarsPeriod.BarsPeriodType)
                    : ClientId;
                if (WriteDecisionLog)
                    decisionLogPath = Path.Combine(Path.Combine(NinjaTrader.Core.Globals.UserDataDir, "AITradingBridge"),
                        "decisions-" + SafeFileName(clientId) + ".csv");
            }
            else if (State == State.Realtime)
            {
                StartBridge();
            }
            else if (State == State.Terminated)
            {
                if (worker != null)
                {
                    worker.Stop(200);
                    worker = null;
                }
            }
        }

        private void StartBridge()
        {
            AitbSessionOptions options = new AitbSessionOptions();
            options.Endpoint = Endpoint;
            options.Client = clientId;
            options.Instrument = Instrument.FullName;
            options.TimeoutMs = TimeoutMs;
            options.Tries = Retries;
            options.HistoryKeep = Math.Max(HistoryBars, 1);
            AitbSession session;
            try
            {
                session = new AitbSession(options, Say);
            }
            catch (ArgumentException ex)
            {
                Say("NOT STARTED: " + ex.Message);
                return;
            }
            List<AitbBar> history = new List<AitbBar>();
            for (int i = Math.Max(0, CurrentBar - HistoryBars + 1); i <= CurrentBar; i++)
                history.Add(new AitbBar(Bars.GetTime(i), Bars.GetOpen(i), Bars.GetHigh(i), Bars.GetLow(i), Bars.GetClose(i), Bars.GetVolume(i)));
            worker = new AitbWorker(session, OnWorkerDecision, Say);
            worker.EnqueueStart(history);
            Say(string.Format(CultureInfo.InvariantCulture, "client {0} -> {1}; sending {2} bars of history{3}",
                clientId, Endpoint, history.Count, LogOnly ? "; LogOnly: no orders will be placed" : ""));
        }

        protected override void OnBarUpdate()
        {
            // Historical bars never trade and are not sent one by one: the daemon gets them
            // as one history backfill at the switch to real time.
            if (State != State.Realtime || worker == null || BarsInProgress != 0) return;

            if (entryTimeProvisional && Position.MarketPosition != MarketPosition.Flat)
            {
                entryTime = Time[0]; // the entry filled inside the bar that just closed
                entryTimeProvisional = false;
            }
            if (entryPending && Position.MarketPosition == MarketPosition.Flat && CurrentBar > entryPendingBar + 1)
            {
                Say("entry order did not fill within a bar; no longer waiting for it");
                entryPending = false;
            }
            TrailStop();
            AitbBar bar = new AitbBar(Time[0], Open[0], High[0], Low[0], Close[0], Volume[0]);
            worker.EnqueueBar(bar, Snapshot(Position.MarketPosition, Position.Quantity, Position.AveragePrice, Time[0]), CurrentBar);
        }

        /// <summary>Moves a trailing stop at the bar close (see AitbTrail).</summary>
        private void TrailStop()
        {
            int side = SideOf(Position.MarketPosition);
            if (!trailing || side == 0 || double.IsNaN(stopPrice) || activeSignal == null) return;
            bestPrice = side > 0 ? Math.Max(bestPrice, High[0]) : Math.Min(bestPrice, Low[0]);
            double next = Instrument.MasterInstrument.RoundToTickSize(
                AitbTrail.NextStop(side, stopPrice, bestPrice, trailPoints, Close[0], Instrument.MasterInstrument.TickSize));
            if (next == stopPrice) return;
            SetStopLoss(activeSignal, CalculationMode.Price, next, false);
            Say(string.Format(CultureInfo.InvariantCulture, "trail: stop {0} -> {1}", stopPrice, next));
            stopPrice = next;
        }

        /// <summary>The position for the daemon. <paramref name="fillBarIfUnknown"/> stands in
        /// for the entry's bar if the position update overtook the execution update (some
        /// broker connections do not keep their order).</summary>
        private AitbPosition Snapshot(MarketPosition marketPosition, int quantity, double averagePrice, DateTime fillBarIfUnknown)
        {
            AitbPosition p = new AitbPosition();
            p.Side = SideOf(marketPosition);
            if (p.Side == 0) return p;
            if (!entryTime.HasValue)
            {
                entryTime = fillBarIfUnknown;
                entryTimeProvisional = true;
            }
            p.Quantity = quantity;
            p.EntryPrice = averagePrice;
            p.EntryTime = entryTime;
            p.StopPrice = stopPrice;
            p.TargetPrice = targetPrice;
            p.Trailing = trailing;
            return p;
        }

        private static int SideOf(MarketPosition marketPosition)
        {
            if (marketPosition == MarketPosition.Long) return 1;
            if (marketPosition == MarketPosition.Short) return -1;
            return 0;
        }

        /// <summary>Worker thread: hand the decision to the strategy thread.</summary>
        private void OnWorkerDecision(AitbJob job)
        {
            try
            {
                TriggerCustomEvent(ExecuteDecision, job);
            }
            catch (Exception ex)
            {
                Say("decision for " + AitbJsonWriter.FormatTime(job.Bar.Time) + " dropped: " + ex.Message);
            }
        }

        private void ExecuteDecision(object state)
        {
            AitbJob job = (AitbJob)state;
            AitbDecision d = job.Decision;
            string result = Execute(job, d);
            if (d.Outcome == AitbDecision.OutcomeUnreachable)
            {
                if (!outage)
                    Log("AITradingBridge: daemon at " + Endpoint + " is not answering; acting as HOLD. Working stop and target orders stay in place.", LogLevel.Warning);
                outage = true;
            }
            else if (outage)
            {
                outage = false;
                Log("AITradingBridge: daemon at " + Endpoint + " is answering again.", LogLevel.Information);
            }
            Say(string.Format(CultureInfo.InvariantCulture, "{0} seq={1} {2} outcome={3}{4} tries={5}{6} {7:0.0}ms -> {8}",
                AitbJsonWriter.FormatTime(d.BarTime), d.Seq, d.Name, d.Outcome, d.WarmingUp ? " warming_up" : "",
                d.Attempts, d.Resynced ? " resynced" : "", d.LatencyMs, result));
            WriteDecisionRow(d, result);
        }

        /// <summary>Carries out one decision; returns what was done, for the log.</summary>
        private string Execute(AitbJob job, AitbDecision d)
        {
            if (d.Outcome == AitbDecision.OutcomeUnreachable)
                return "HOLD (daemon unreachable after " + Retries + " tries: " + d.Message + "; stops stay working)";
            if (!d.IsOk)
                return "HOLD (" + d.Outcome + ": " + (d.ErrorCode != null ? d.ErrorCode + " " : "") + d.Message + ")";
            if (d.Action == AitbProtocol.Hold) return d.WarmingUp ? "HOLD (warming up)" : "HOLD";
            if (State != State.Realtime) return "not executed: strategy is no longer real-time";
            if (CurrentBar != job.BarIndex) return "not executed: a newer bar closed before the reply arrived";

            int side = SideOf(Position.MarketPosition);
            string refusal = AitbGuard.Refusal(d, side, entryPending, Close[0], stopPrice);
            if (refusal != null) return "not executed: " + refusal;
            if (LogOnly) return "LogOnly: would " + Describe(d);

            switch (d.Action)
            {
                case AitbProtocol.Buy:
                case AitbProtocol.Sell:
                    return Enter(d);
                case AitbProtocol.MoveToBreakeven:
                case AitbProtocol.DisableTrail:
                    if (d.Action == AitbProtocol.DisableTrail) trailing = false;
                    MoveStop(AitbGuard.SafeStop(side, stopPrice, d.StopPrice, Close[0]));
                    return Describe(d);
                case AitbProtocol.EnableTrail:
                    // As in training (env/execution.py enable_trailing): a second ENABLE_TRAIL
                    // while trailing changes nothing. Restarting the best price at this close
                    // would hold the stop further back than the model was trained with.
                    if (trailing)
                        return string.Format(CultureInfo.InvariantCulture, "trail already on ({0} points); unchanged", trailPoints);
                    trailing = true;
                    trailPoints = d.TrailPoints;
                    bestPrice = Close[0];
                    return Describe(d);
            }
            return "HOLD";
        }

        private string Enter(AitbDecision d)
        {
            bool isLong = d.Action == AitbProtocol.Buy;
            string signal = isLong ? LongSignal : ShortSignal;
            double stop = Instrument.MasterInstrument.RoundToTickSize(d.StopPrice);
            double target = Instrument.MasterInstrument.RoundToTickSize(d.TargetPrice);
            // Our own state first: the fill's OnExecutionUpdate/OnPositionUpdate must find it
            // in place (and must not have its entry time wiped afterwards) even if a
            // connection delivers them before Enter* returns.
            activeSignal = signal;
            stopPrice = stop;
            targetPrice = target;
            trailing = false;
            entryTime = null;
            entryTimeProvisional = false;
            entryPending = true;
            entryPendingBar = CurrentBar;
            // Set* before Enter*: NinjaTrader submits this OCO bracket on the entry's fill.
            // Every entry goes through here, so a stop moved to breakeven or trailed in an
            // earlier trade (NinjaTrader keeps the last Set* value per signal) is always
            // replaced before the next entry can fill.
            SetStopLoss(signal, CalculationMode.Price, stop, false);
            SetProfitTarget(signal, CalculationMode.Price, target);
            if (isLong) EnterLong(Quantity, signal); else EnterShort(Quantity, signal);
            return Describe(d);
        }

        private void MoveStop(double price)
        {
            price = Instrument.MasterInstrument.RoundToTickSize(price);
            if (price == stopPrice || activeSignal == null) return;
            SetStopLoss(activeSignal, CalculationMode.Price, price, false);
            stopPrice = price;
        }

        private static string Describe(AitbDecision d)
        {
            switch (d.Action)
            {
                case AitbProtocol.Buy:
                case AitbProtocol.Sell:
                    return string.Format(CultureInfo.InvariantCulture, "{0} market, stop {1}, target {2}",
                        d.Action == AitbProtocol.Buy ? "buy" : "sell", d.StopPrice, d.TargetPrice);
                case AitbProtocol.MoveToBreakeven:
                    return string.Format(CultureInfo.InvariantCulture, "stop to breakeven {0}", d.StopPrice);
                case AitbProtocol.EnableTrail:
                    return string.Format(CultureInfo.InvariantCulture, "trail on, {0} points", d.TrailPoints);
                case AitbProtocol.DisableTrail:
                    return string.Format(CultureInfo.InvariantCulture, "trail off, stop {0}", d.StopPrice);
            }
            return "HOLD";
        }

        protected override void OnExecutionUpdate(Execution execution, string executionId, double price, int quantity,
            MarketPosition marketPosition, string orderId, DateTime time)
        {
            if (execution.Order == null) return;
            string name = execution.Order.Name;
            if (name == LongSignal || name == ShortSignal)
            {
                entryPending = false;
                if (!entryTime.HasValue)
                {
                    // The fill is inside the bar now forming; its close time is known once it
                    // closes (OnBarUpdate corrects this). Until then the next bar's stamp, or
                    // the fill time, is the best estimate.
                    entryTime = FormingBarTime(time);
                    entryTimeProvisional = true;
                }
            }
            if (State == State.Realtime)
                Say(string.Format(CultureInfo.InvariantCulture, "fill: {0} {1} @ {2} ({3})", name, quantity, price, marketPosition));
        }

        protected override void OnPositionUpdate(Position position, double averagePrice, int quantity, MarketPosition marketPosition)
        {
            if (marketPosition == MarketPosition.Flat)
            {
                activeSignal = null;
                stopPrice = double.NaN;
                targetPrice = double.NaN;
                trailing = false;
                entryTime = null;
                entryTimeProvisional = false;
            }
            if (State == State.Realtime && worker != null)
                worker.EnqueuePosition(Snapshot(marketPosition, quantity, averagePrice, FormingBarTime(Time[0])));
        }

        /// <summary>Time stamp of the bar now forming (its close time for time-based bars).</summary>
        private DateTime FormingBarTime(DateTime fallback)
        {
            return Bars.Count > CurrentBar + 1 ? Bars.GetTime(CurrentBar + 1) : fallback;
        }

        private void Say(string message)
        {
            Print("AITB " + (Instrument != null ? Instrument.FullName : "") + " " + message);
        }

        private void WriteDecisionRow(AitbDecision d, string result)
        {
            if (decisionLogPath == null) return;
            try
            {
                bool fresh = !File.Exists(decisionLogPath);
                if (fresh) Directory.CreateDirectory(Path.GetDirectoryName(decisionLogPath));
                StringBuilder row = new StringBuilder();
                if (fresh) row.AppendLine("logged_at,bar_time,seq,action,outcome,warming_up,tries,resynced,latency_ms,stop_price,target_price,trail_points,result");
                row.Append(DateTime.Now.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture)).Append(',')
                   .Append(AitbJsonWriter.FormatTime(d.BarTime)).Append(',')
                   .Append(d.Seq.ToString(CultureInfo.InvariantCulture)).Append(',')
                   .Append(d.Name).Append(',').Append(d.Outcome).Append(',')
                   .Append(d.WarmingUp ? "1" : "0").Append(',')
                   .Append(d.Attempts.ToString(CultureInfo.InvariantCulture)).Append(',')
                   .Append(d.Resynced ? "1" : "0").Append(',')
                   .Append(d.LatencyMs.ToString("0.0", CultureInfo.InvariantCulture)).Append(',')
                   .Append(Csv(d.StopPrice)).Append(',').Append(Csv(d.TargetPrice)).Append(',').Append(Csv(d.TrailPoints)).Append(',')
                   .Append('"').Append(result.Replace("\"", "'")).Append('"').AppendLine();
                File.AppendAllText(decisionLogPath, row.ToString());
            }
            catch (Exception ex)
            {
                Say("decision log not written (" + ex.Message + "); logging to this window only");
                decisionLogPath = null;
            }
        }

        private static string Csv(double value)
        {
            return double.IsNaN(value) ? "" : value.ToString("R", CultureInfo.InvariantCulture);
        }

        private static string SafeFileName(string text)
        {
            StringBuilder sb = new StringBuilder();
            foreach (char c in text) sb.Append(char.IsLetterOrDigit(c) || c == '-' || c == '_' ? c : '_');
            return sb.ToString();
        }

        #region Properties
        [NinjaScriptProperty]
        [Display(Name = "Endpoint", Description = "Daemon address, e.g. tcp://127.0.0.1:5555 or tcp://192.168.1.20:5555", Order = 1, GroupName = "AI Trading Bridge")]
        public string Endpoint { get; set; }

        [NinjaScriptProperty]
        [Range(100, 60000)]
        [Display(Name = "Timeout (ms)", Description = "How long to wait for each reply before retrying", Order = 2, GroupName = "AI Trading Bridge")]
        public int TimeoutMs { get; set; }

        [NinjaScriptProperty]
        [Range(1, 10)]
        [Display(Name = "Tries", Description = "Tries per request before acting as HOLD for that bar", Order = 3, GroupName = "AI Trading Bridge")]
        public int Retries { get; set; }

        [NinjaScriptProperty]
        [Display(Name = "Client id", Description = "Unique per chart; empty = nt8-<instrument>-<period>", Order = 4, GroupName = "AI Trading Bridge")]
        public string ClientId { get; set; }

        [NinjaScriptProperty]
        [Range(1, int.MaxValue)]
        [Display(Name = "Quantity", Description = "Contracts per entry", Order = 5, GroupName = "AI Trading Bridge")]
        public int Quantity { get; set; }

        [NinjaScriptProperty]
        [Display(Name = "Log only", Description = "Log the daemon's decisions without placing any order", Order = 6, GroupName = "AI Trading Bridge")]
        public bool LogOnly { get; set; }

        [NinjaScriptProperty]
        [Range(50, 100000)]
        [Display(Name = "History bars", Description = "Bars of history sent at start and kept to rebuild a restarted daemon", Order = 7, GroupName = "AI Trading Bridge")]
        public int HistoryBars { get; set; }

        [NinjaScriptProperty]
        [Display(Name = "Write decision log", Description = @"CSV of every decision in Documents\NinjaTrader 8\AITradingBridge", Order = 8, GroupName = "AI Trading Bridge")]
        public bool WriteDecisionLog { get; set; }
        #endregion
    }
#endif
}
