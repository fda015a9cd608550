// Transport.cs -- ZeroMQ without a DLL: ZMTP 3.0 (rfc.zeromq.org/spec/23), a REQ socket
// with the NULL mechanism, on System.Net.Sockets. Every wait is bounded by an AitbDeadline.
// Part of the ai-trading-bridge NinjaScript add-on (see ninjatrader/README.md).

using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Threading;

namespace NinjaTrader.NinjaScript.AddOns.AITradingBridgeClient
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
}
