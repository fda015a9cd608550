// Protocol.cs -- the messages of wire protocol v1 with the v1.1 additions
// (docs/protocol.md): bars, positions, requests and the decision read from a bar reply.
// Part of the ai-trading-bridge NinjaScript add-on (see ninjatrader/README.md).

using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace NinjaTrader.NinjaScript.AddOns.AITradingBridgeClient
{
    /// <summary>A closed bar; <see cref="Time"/> is its close time, as NinjaTrader stamps it
    /// (DateTimeKind.Utc: sent with Z; otherwise sent naive, read as exchange-local).</summary>
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

    /// <summary>What the client tells the daemon about itself in hello (PROTOCOL v1.1; every
    /// field optional: null or NaN leaves it out).</summary>
    public sealed class AitbClientInfo
    {
        public double TickSize = double.NaN;     // MasterInstrument.TickSize
        public double PointValue = double.NaN;   // MasterInstrument.PointValue, account currency per point
        public string Currency;                  // ISO 4217, e.g. "USD"
        public string BarPeriodType;             // "minute", "second", "day", ...
        public int BarPeriodValue;
        public string Account;                   // NinjaTrader account name, e.g. "Sim101"
    }

    /// <summary>What the daemon said about its model in the hello reply.</summary>
    public sealed class AitbModelInfo
    {
        public string Version;
        public string Sha256;
        public string Instrument;                // v1.1: root the model was trained on
        public string BarPeriodType;             // v1.1
        public int BarPeriodValue;
        public double TrainedTickSize = double.NaN;
        public string RiskState;                 // v1.1: active | reducing | halted
        public string Refusal;                   // hello refused: the daemon's error
        public int WarmupBars;
    }

    /// <summary>Builds protocol v1 requests (with the optional v1.1 fields).</summary>
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
            return Hello(client, instrument, null);
        }

        public static string Hello(string client, string instrument, AitbClientInfo info)
        {
            AitbJsonWriter w = Envelope("hello", client, instrument);
            if (info != null)
            {
                if (!double.IsNaN(info.TickSize) && !double.IsNaN(info.PointValue))
                {
                    w.Name("instrument_spec").BeginObject().Prop("tick_size", info.TickSize).Prop("point_value", info.PointValue);
                    if (info.Currency != null) w.Prop("currency", info.Currency);
                    w.EndObject();
                }
                if (info.BarPeriodType != null)
                    w.Name("bar_period").BeginObject().Prop("type", info.BarPeriodType).Prop("value", (long)info.BarPeriodValue).EndObject();
                if (info.Account != null) w.Prop("account", info.Account);
            }
            return w.EndObject().ToString();
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
            return Position(client, instrument, seq, position, double.NaN, null);
        }

        /// <summary>v1.1: <paramref name="realizedPnl"/> is the session's realized P&amp;L in the
        /// account currency (NaN: left out); <paramref name="account"/> null: left out.</summary>
        public static string Position(string client, string instrument, long seq, AitbPosition position, double realizedPnl, string account)
        {
            AitbJsonWriter w = Envelope("position", client, instrument);
            w.Prop("seq", seq).Name("position");
            position.Write(w);
            if (!double.IsNaN(realizedPnl) && !double.IsInfinity(realizedPnl)) w.Prop("realized_pnl", realizedPnl);
            if (account != null) w.Prop("account", account);
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
        // v1.1: a risk rail changed the decision. Shown to the trader; ModelAction is what the
        // model wanted and is NEVER traded (Action is what the daemon allows).
        public string RiskRule;
        public string RiskDetail;
        public int RiskModelAction = -1;

        public bool IsOk { get { return Outcome == OutcomeOk; } }
    }
}
