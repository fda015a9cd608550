// Rules.cs -- pure trading rules shared by the strategy and the test harness: the trailing
// stop (identical to env/execution.py), the checks before a decision is executed, and the
// client-side limits. No NinjaTrader types.
// Part of the ai-trading-bridge NinjaScript add-on (see ninjatrader/README.md).

using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace NinjaTrader.NinjaScript.AddOns.AITradingBridgeClient
{
    /// <summary>
    /// Trailing stop, identical to env/execution.py trailed_stop: the stop follows the best
    /// price since trailing was enabled at trail_points distance (floored to a tick for a
    /// long, ceiled for a short), never moves against the position and never sits closer
    /// than one tick beyond the last close.
    /// </summary>
    public static class AitbTrail
    {
        // Prices are whole tick counts written in the tick's decimals, as env/execution.py
        // writes them: the count is snapped to the nearest whole number within float error
        // (1.0817 / 0.00005 is 21633.999999999996), and count x tick is taken in decimal so
        // 85048 x 0.1 is 8504.8, not 8504.800000000001.
        private static double Ticks(double price, double tick)
        {
            double count = price / tick;
            double nearest = Math.Round(count);
            return Math.Abs(count - nearest) <= Math.Max(1e-9, Math.Abs(count) * 1e-12) ? nearest : count;
        }

        public static double FloorToTick(double price, double tick)
        {
            return (double)((decimal)Math.Floor(Ticks(price, tick)) * (decimal)tick);
        }

        public static double CeilToTick(double price, double tick)
        {
            return (double)((decimal)Math.Ceiling(Ticks(price, tick)) * (decimal)tick);
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

    /// <summary>What the strategy does when it starts while the account already holds a
    /// position in the instrument (after a crash, a reboot or a re-enable). NinjaTrader
    /// Help Guide, "Syncing Account Positions".</summary>
    public enum AitbAccountPositionAtStart
    {
        /// <summary>Place no orders until the account is flat; decisions are only logged.</summary>
        RefuseToTrade,
        /// <summary>StartBehavior.AdoptAccountPosition: manage the account position as the
        /// strategy's own, protected by a new stop and target.</summary>
        Adopt
    }

    /// <summary>Stops against the market: brokers reject a sell stop at or above the bid and a
    /// buy stop at or below the ask, and NinjaTrader's RealtimeErrorHandling then stops the
    /// strategy and flattens (Help Guide, "RealtimeErrorHandling").</summary>
    public static class AitbStops
    {
        /// <summary>Why a stop for a <paramref name="side"/> position at <paramref name="stop"/>
        /// would be rejected now, or null. It must sit <paramref name="marginTicks"/> ticks
        /// beyond the bid (long) or the ask (short), and never less than one tick: a stop at the
        /// bid/ask is a stop at the market, which brokers reject as well.</summary>
        public static string Problem(int side, double stop, double bid, double ask, double tick, int marginTicks)
        {
            if (double.IsNaN(stop) || double.IsNaN(bid) || double.IsNaN(ask) || bid <= 0 || ask <= 0) return null;
            marginTicks = Math.Max(1, marginTicks);
            double margin = marginTicks * tick - tick * 1e-6;
            if (side > 0 && stop > bid - margin)
                return string.Format(CultureInfo.InvariantCulture, "sell stop {0} is not {1} tick(s) below the bid {2}", stop, marginTicks, bid);
            if (side < 0 && stop < ask + margin)
                return string.Format(CultureInfo.InvariantCulture, "buy stop {0} is not {1} tick(s) above the ask {2}", stop, marginTicks, ask);
            return null;
        }
    }

    /// <summary>Limits the trader sets on the strategy, checked before every order.</summary>
    public sealed class AitbLimits
    {
        public int MaxQuantity = 1;
        public int MaxStopTicks = 400;
        public string ExpectedModelSha256 = "";
        public string ExpectedModelVersion = "";

        /// <summary>Why an entry with this stop must not be placed, or null. The distance is
        /// measured from the price the market entry would fill at (ask for a buy, bid for a sell).</summary>
        public string EntryRefusal(AitbDecision d, int quantity, double bid, double ask, double tick)
        {
            if (quantity > MaxQuantity)
                return string.Format(CultureInfo.InvariantCulture, "quantity {0} is above the maximum quantity {1}", quantity, MaxQuantity);
            double reference = d.Action == AitbProtocol.Buy ? ask : bid;
            double ticks = Math.Abs(reference - d.StopPrice) / tick;
            if (ticks > MaxStopTicks + 1e-6)
                return string.Format(CultureInfo.InvariantCulture, "stop {0} is {1:0} ticks from the market; the maximum is {2}", d.StopPrice, ticks, MaxStopTicks);
            return null;
        }

        /// <summary>Why this daemon's model must not trade this chart, or null.
        /// <paramref name="periodType"/> is the protocol's name ("minute", ...).</summary>
        public string ModelRefusal(AitbModelInfo model, string instrumentRoot, string periodType, int periodValue)
        {
            if (model == null) return "the daemon has not answered hello yet";
            if (model.Refusal != null) return "the daemon refused hello: " + model.Refusal;
            if (ExpectedModelSha256.Length > 0 && !string.Equals(ExpectedModelSha256, model.Sha256, StringComparison.OrdinalIgnoreCase))
                return "the daemon serves model sha256 " + (model.Sha256 ?? "(none)") + ", not the expected " + ExpectedModelSha256;
            if (ExpectedModelVersion.Length > 0 && ExpectedModelVersion != model.Version)
                return "the daemon serves model version " + (model.Version ?? "(none)") + ", not the expected " + ExpectedModelVersion;
            if (model.Instrument != null && !string.Equals(model.Instrument, instrumentRoot, StringComparison.OrdinalIgnoreCase))
                return "the model was trained on " + model.Instrument + ", this chart is " + instrumentRoot;
            if (model.BarPeriodType != null && (!string.Equals(model.BarPeriodType, periodType, StringComparison.OrdinalIgnoreCase) || model.BarPeriodValue != periodValue))
                return string.Format(CultureInfo.InvariantCulture, "the model was trained on {0} {1} bars, this chart has {2} {3} bars",
                    model.BarPeriodValue, model.BarPeriodType, periodValue, periodType);
            return null;
        }
    }

    /// <summary>Bar times from NinjaTrader's display time zone to UTC.</summary>
    public static class AitbTimes
    {
        /// <summary>NinjaTrader stamps bars in Tools &gt; Options &gt; General's time zone; the
        /// daemon gets UTC (protocol v1.1). A time that does not exist in that zone (the hour
        /// skipped when clocks go forward) is converted with the zone's standard offset.</summary>
        public static DateTime ToUtc(DateTime displayTime, TimeZoneInfo zone)
        {
            DateTime unspecified = DateTime.SpecifyKind(displayTime, DateTimeKind.Unspecified);
            if (zone.IsInvalidTime(unspecified))
                return DateTime.SpecifyKind(unspecified - zone.BaseUtcOffset, DateTimeKind.Utc);
            return TimeZoneInfo.ConvertTimeToUtc(unspecified, zone);
        }
    }

    /// <summary>Client ids in use in this NinjaTrader (all strategies share one process), so
    /// two instances never talk to the daemon, or write a log, under the same name.</summary>
    public static class AitbClientIds
    {
        private static readonly HashSet<string> InUse = new HashSet<string>(StringComparer.OrdinalIgnoreCase);

        /// <summary><paramref name="wanted"/>, or wanted-2, wanted-3... if it is taken.</summary>
        public static string Claim(string wanted)
        {
            lock (InUse)
            {
                string id = wanted;
                for (int n = 2; InUse.Contains(id); n++) id = wanted + "-" + n.ToString(CultureInfo.InvariantCulture);
                InUse.Add(id);
                return id;
            }
        }

        public static void Release(string id)
        {
            if (id == null) return;
            lock (InUse) InUse.Remove(id);
        }
    }
}
