// SimDriver.cs -- runs the real AITradingBridge strategy class on the behavioural
// NinjaTrader double (NinjaTraderStubs.cs) the way NinjaTrader 8 would.
//
// Built by tests/test_ninjatrader_lifecycle.py with mcs -langversion:5 from this file,
// NinjaTraderStubs.cs and the strategy's sources. Run as:
//   mono sim.exe <scenario file>
// Prints one JSON object per line: what the strategy did (orders, fills, prints, logs,
// chart text, state changes) and, at the end, a "final" object per instance.
//
// Scenario file, one directive per line (fields separated by a tab):
//   strategy   <type name>                         (default ...Strategies.AITradingBridge)
//   timezone   <time zone id>                      Tools > Options > General time zone
//   instrument <root> <full name> <tick> <point value> <currency>
//   period     <BarsPeriodType> <value>
//   userdata   <folder>                            Core.Globals.UserDataDir
//   lockfile   <path>                              opened without sharing (a spreadsheet)
//   account    <name> <signed quantity> <average price>
//   instance   <id> <account name>
//   prop       <id> <property> <value>             a value set in the strategy dialog
//   option     <id> <fill_inside_enter|late_flat_updates> <0|1>
//   wait_ms    <milliseconds>                      how long to wait for each decision
//   flatten    <live bar index> <account name>     the trader flattens the account by hand
//   history    <time> <open> <high> <low> <close> <volume>   (display time zone)
//   live       <time> <open> <high> <low> <close> <volume>

using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Reflection;
using System.Text;
using NinjaTrader.Cbi;
using NinjaTrader.Data;
using NinjaTrader.NinjaScript;

public sealed class SimDriver : ISimSink
{
    private sealed class SimBar
    {
        public DateTime Time;
        public double Open, High, Low, Close;
        public long Volume;
    }

    private readonly object outputGate = new object();
    private readonly Dictionary<string, Account> accounts = new Dictionary<string, Account>();
    private readonly List<StrategyBase> instances = new List<StrategyBase>();
    private readonly List<SimBar> history = new List<SimBar>();
    private readonly List<SimBar> live = new List<SimBar>();
    private readonly Dictionary<StrategyBase, int> realtimeUpdates = new Dictionary<StrategyBase, int>();
    private string strategyType = "NinjaTrader.NinjaScript.Strategies.AITradingBridge";
    private MasterInstrument master;
    private Instrument instrument;
    private BarsPeriodType periodType = BarsPeriodType.Minute;
    private int periodValue = 1;
    private int waitMs = 5000;
    private FileStream lockedFile;
    private readonly Dictionary<int, string> manualFlattens = new Dictionary<int, string>();

    public static int Main(string[] args)
    {
        Console.OutputEncoding = new UTF8Encoding(false);
        SimDriver driver = new SimDriver();
        driver.Load(File.ReadAllLines(args[0]));
        driver.Run();
        return 0;
    }

    public void Emit(string instance, string kind, object[] fields)
    {
        StringBuilder sb = new StringBuilder();
        sb.Append("{\"event\":").Append(Quote(kind)).Append(",\"instance\":").Append(Quote(instance));
        for (int i = 0; i + 1 < fields.Length; i += 2)
            sb.Append(',').Append(Quote((string)fields[i])).Append(':').Append(Value(fields[i + 1]));
        sb.Append('}');
        lock (outputGate) Console.Out.WriteLine(sb.ToString());
    }

    private static string Value(object value)
    {
        if (value == null) return "null";
        if (value is bool) return (bool)value ? "true" : "false";
        if (value is int || value is long) return Convert.ToString(value, CultureInfo.InvariantCulture);
        if (value is double)
        {
            double d = (double)value;
            if (double.IsNaN(d) || double.IsInfinity(d)) return "null";
            return d.ToString("R", CultureInfo.InvariantCulture);
        }
        return Quote(Convert.ToString(value, CultureInfo.InvariantCulture));
    }

    private static string Quote(string text)
    {
        StringBuilder sb = new StringBuilder("\"");
        foreach (char c in text ?? "")
        {
            if (c == '"' || c == '\\') sb.Append('\\').Append(c);
            else if (c < 0x20 || c > 0x7E) sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
            else sb.Append(c);
        }
        return sb.Append('"').ToString();
    }

    private static double Num(string text)
    {
        return double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture);
    }

    private void Load(string[] lines)
    {
        Dictionary<string, StrategyBase> byId = new Dictionary<string, StrategyBase>();
        foreach (string raw in lines)
        {
            if (raw.Trim().Length == 0 || raw.StartsWith("#")) continue;
            string[] f = raw.Split('\t');
            switch (f[0])
            {
                case "strategy": strategyType = f[1]; break;
                case "timezone": NinjaTrader.Core.Globals.GeneralOptions.TimeZoneInfo = TimeZoneInfo.FindSystemTimeZoneById(f[1]); break;
                case "instrument":
                    master = new MasterInstrument();
                    master.Name = f[1];
                    master.TickSize = Num(f[3]);
                    master.PointValue = Num(f[4]);
                    master.Currency = (Currency)Enum.Parse(typeof(Currency), f[5]);
                    instrument = new Instrument();
                    instrument.FullName = f[2];
                    instrument.MasterInstrument = master;
                    break;
                case "period":
                    periodType = (BarsPeriodType)Enum.Parse(typeof(BarsPeriodType), f[1]);
                    periodValue = int.Parse(f[2], CultureInfo.InvariantCulture);
                    break;
                case "userdata": NinjaTrader.Core.Globals.UserDataDir = f[1]; break;
                case "lockfile":
                    Directory.CreateDirectory(Path.GetDirectoryName(f[1]));
                    lockedFile = new FileStream(f[1], FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
                    break;
                case "account":
                    {
                        Account account = AccountNamed(f[1]);
                        account.SimPosition.SetSigned(int.Parse(f[2], CultureInfo.InvariantCulture), Num(f[3]));
                        break;
                    }
                case "instance":
                    {
                        StrategyBase s = Create(f[1], AccountNamed(f[2]));
                        byId[f[1]] = s;
                        instances.Add(s);
                        break;
                    }
                case "prop": SetProperty(byId[f[1]], f[2], f[3]); break;
                case "option":
                    if (f[2] == "fill_inside_enter") byId[f[1]].SimFillInsideEnter = f[3] == "1";
                    else if (f[2] == "late_flat_updates") byId[f[1]].SimLateFlatUpdates = f[3] == "1";
                    else if (f[2] == "reject_stop_changes") byId[f[1]].SimRejectStopChanges = f[3] == "1";
                    break;
                case "flatten": manualFlattens[int.Parse(f[1], CultureInfo.InvariantCulture)] = f[2]; break;
                case "wait_ms": waitMs = int.Parse(f[1], CultureInfo.InvariantCulture); break;
                case "history": history.Add(ParseBar(f)); break;
                case "live": live.Add(ParseBar(f)); break;
                default: throw new ArgumentException("unknown scenario directive " + f[0]);
            }
        }
    }

    private static SimBar ParseBar(string[] f)
    {
        SimBar bar = new SimBar();
        bar.Time = DateTime.ParseExact(f[1], "yyyy-MM-dd'T'HH:mm:ss", CultureInfo.InvariantCulture, DateTimeStyles.None);
        bar.Open = Num(f[2]); bar.High = Num(f[3]); bar.Low = Num(f[4]); bar.Close = Num(f[5]);
        bar.Volume = long.Parse(f[6], CultureInfo.InvariantCulture);
        return bar;
    }

    private Account AccountNamed(string name)
    {
        Account account;
        if (!accounts.TryGetValue(name, out account))
        {
            account = new Account();
            account.Name = name;
            account.SimPosition = new Position();
            accounts[name] = account;
        }
        return account;
    }

    /// <summary>A new strategy instance, through SetDefaults, as NinjaTrader creates one.</summary>
    private StrategyBase Create(string id, Account account)
    {
        Type type = null;
        foreach (Assembly assembly in AppDomain.CurrentDomain.GetAssemblies())
            if ((type = assembly.GetType(strategyType)) != null) break;
        if (type == null) throw new ArgumentException("no strategy class " + strategyType);
        StrategyBase s = (StrategyBase)Activator.CreateInstance(type);
        s.SimSink = this;
        s.SimInstance = id;
        s.Account = account;
        s.Instrument = instrument;
        s.BarsPeriod = new BarsPeriod { BarsPeriodType = periodType, Value = periodValue };
        s.Position.Instrument = instrument;
        s.SimSetState(State.SetDefaults);
        realtimeUpdates[s] = 0;
        return s;
    }

    /// <summary>What the trader types into the strategy dialog (after SetDefaults).</summary>
    private void SetProperty(StrategyBase s, string name, string text)
    {
        PropertyInfo property = s.GetType().GetProperty(name);
        if (property == null || !property.CanWrite)
        {
            Emit(s.SimInstance, "property_missing", new object[] { "name", name });
            return;
        }
        Type t = property.PropertyType;
        object value;
        if (t.IsEnum) value = Enum.Parse(t, text);
        else if (t == typeof(string)) value = text;
        else if (t == typeof(bool)) value = text == "1" || text.ToLowerInvariant() == "true";
        else value = Convert.ChangeType(text, t, CultureInfo.InvariantCulture);
        property.SetValue(s, value, null);
    }

    private void Run()
    {
        foreach (StrategyBase s in instances)
        {
            s.SimSetState(State.Configure);
            Emit(s.SimInstance, "configured", new object[] {
                "calculate", s.Calculate.ToString(), "realtime_error_handling", s.RealtimeErrorHandling.ToString(),
                "start_behavior", s.StartBehavior.ToString(), "exit_on_session_close", s.IsExitOnSessionCloseStrategy,
                "entries_per_direction", s.EntriesPerDirection, "connection_loss_handling", s.ConnectionLossHandling.ToString() });
            foreach (SimBar bar in history) Append(s, bar, true);
            s.SimSetState(State.DataLoaded);
            s.SimSetState(State.Historical);
            for (int i = 0; i < history.Count && s.State == State.Historical; i++)
            {
                s.CurrentBar = i;
                s.Bars.Current = i;
                s.IsFirstTickOfBar = true;
                s.SimNow = history[i].Time;
                s.SimBid = history[i].Close;
                s.SimAsk = history[i].Close + master.TickSize;
                s.SimCallBarUpdate();
            }
            if (s.State == State.Terminated) continue;
            s.SimSetState(State.Transition);
            s.SimApplyStartBehavior();
            if (s.State == State.Terminated) continue;
            s.SimSetState(State.Realtime);
        }
        for (int k = 0; k < live.Count; k++)
        {
            SimBar bar = live[k];
            string flattened;
            if (manualFlattens.TryGetValue(k, out flattened))
            {
                // Another window (Chart Trader, SuperDOM) closes the account position.
                AccountNamed(flattened).SimPosition.SetSigned(0, 0);
                Emit("", "manual_flatten", new object[] { "account", flattened, "bar", k });
            }
            double[] ticks = bar.Close >= bar.Open
                ? new double[] { bar.Open, bar.Low, bar.High, bar.Close }
                : new double[] { bar.Open, bar.High, bar.Low, bar.Close };
            for (int t = 0; t < ticks.Length; t++)
                foreach (StrategyBase s in instances)
                    if (s.State == State.Realtime) Tick(s, bar, ticks[t], t == 0);
        }
        foreach (StrategyBase s in instances)
        {
            if (s.State == State.Realtime && s.Calculate == Calculate.OnBarClose && s.CurrentBar < s.Bars.Count - 1)
                CloseBar(s, s.Bars.Count - 1);
        }
        foreach (StrategyBase s in instances)
        {
            if (s.State != State.Terminated) s.SimSetState(State.Terminated);
            List<string> working = new List<string>();
            foreach (Order o in s.SimWorking)
                working.Add(o.Name + "@" + (o.OrderType == OrderType.Limit ? o.LimitPrice : o.StopPrice).ToString("R", CultureInfo.InvariantCulture));
            Emit(s.SimInstance, "final", new object[] {
                "position", s.Position.Signed, "account_position", s.PositionAccount.Signed,
                "working", string.Join(";", working.ToArray()),
                "realized", s.SystemPerformance.RealTimeTrades.TradesPerformance.Currency.CumProfit });
        }
        if (lockedFile != null) lockedFile.Dispose();
    }

    private void Append(StrategyBase s, SimBar bar, bool complete)
    {
        Bars b = s.Bars;
        b.Times.Add(bar.Time);
        b.Opens.Add(bar.Open);
        b.Highs.Add(complete ? bar.High : bar.Open);
        b.Lows.Add(complete ? bar.Low : bar.Open);
        b.Closes.Add(complete ? bar.Close : bar.Open);
        b.Volumes.Add(complete ? bar.Volume : 0);
        b.SessionStarts.Add(b.Count == 1 || bar.Time.Date != b.Times[b.Count - 2].Date);
    }

    private void Tick(StrategyBase s, SimBar bar, double price, bool first)
    {
        s.SimNow = bar.Time;
        if (first)
        {
            int closing = s.Bars.Count - 1;
            Append(s, bar, false);
            bool closedWasLive = closing >= history.Count;
            s.SimBid = price;
            s.SimAsk = price + master.TickSize;
            if (s.Calculate == Calculate.OnBarClose && closedWasLive) CloseBar(s, closing);
            if (s.State != State.Realtime) return;
        }
        else
        {
            Bars b = s.Bars;
            int n = b.Count - 1;
            b.Highs[n] = Math.Max(b.Highs[n], price);
            b.Lows[n] = Math.Min(b.Lows[n], price);
            b.Closes[n] = price;
            b.Volumes[n] += bar.Volume / 4;
        }
        if (s.Calculate != Calculate.OnBarClose)
        {
            s.CurrentBar = s.Bars.Count - 1;
            s.Bars.Current = s.CurrentBar;
            s.IsFirstTickOfBar = first;
            s.SimBid = price;
            s.SimAsk = price + master.TickSize;
            realtimeUpdates[s]++;
            s.SimCallBarUpdate();
            s.SimPumpCustomEvents(realtimeUpdates[s], waitMs);
        }
        if (s.State == State.Realtime) s.SimTick(price);
    }

    /// <summary>OnBarClose: bar index closes on the first tick of the next bar.</summary>
    private void CloseBar(StrategyBase s, int index)
    {
        s.CurrentBar = index;
        s.Bars.Current = index;
        s.IsFirstTickOfBar = true;
        realtimeUpdates[s]++;
        s.SimCallBarUpdate();
        s.SimPumpCustomEvents(realtimeUpdates[s], waitMs);
    }
}
